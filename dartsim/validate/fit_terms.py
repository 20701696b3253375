"""The fit's fast evaluation of published rows (validate/published_fit.py): every kernel
of every step costed once on a device whose fitted fields are neutral (memory and GEMM
efficiency 1, no all-reduce call cost), so a trial only rescales the terms and applies the
launch rules (engine/machine.py's kernel body, engine/launch.py's rules, here in numpy over
many trials at once). `check_evaluator` gives both this and the engine's prediction: a test
compares them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dartsim.engine.costing import StepCoster
from dartsim.engine.launch import Launch
from dartsim.engine.machine import Device, compute_time, kernel_cost
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.hardware_yaml import override
from dartsim.specs.stack import StackSpec
from dartsim.validate.published import Predictor, Row
from dartsim.workload.kernels import Kernel

COLUMNS = ("dram", "noc", "latency", "gemm", "other", "link", "call", "host", "fixed")
"""Per-kernel terms (seconds at neutral fitted fields; `call` counts all-reduce calls)."""


@dataclass
class StepTerms:
    """Every step of a set of rows as weighted kernel rows (a repeated run of identical
    layers stands as its first copy, a weighted middle and its last copy: enough for sums
    and for the eager closed form's maximum)."""

    terms: np.ndarray  # [N, len(COLUMNS)]
    weight: np.ndarray  # [N] how many kernels a row stands for
    position: np.ndarray  # [N] the kernel's index in its step
    in_max: np.ndarray  # [N] whether the row is a real position (not a weighted middle)
    starts: np.ndarray  # [S] first row of each step
    kernels: np.ndarray  # [S] kernels in each step
    launch: list[Launch]  # per step, at the starting values
    mode: np.ndarray  # [S] 0 graph, 1 synchronous, 2 eager


def kernel_terms(kernel: Kernel, dev: Device) -> list[float]:
    """The kernel's COLUMNS on `dev` (a device with neutral fitted fields)."""
    cost = kernel_cost(kernel, dev)
    moved = cost.weight_bytes + cost.other_bytes
    gemm = other = 0.0
    if kernel.flops_matmul and kernel.shape is not None and not kernel.shape.attention:
        gemm = compute_time(dataclasses.replace(kernel, flops_vector=0), dev)
        other = compute_time(dataclasses.replace(kernel, flops_matmul=0), dev)
    else:
        other = cost.compute_s
    calls = 1.0 if kernel.collective is not None and kernel.collective.tp > 1 else 0.0
    return [cost.dram_s, cost.noc_s, dev.memory_latency_s if moved else 0.0, gemm, other, cost.link_s, calls,
            cost.host_s, cost.fixed_s]  # fmt: skip


def neutral(hw: HardwareSpec, stack: StackSpec) -> tuple[HardwareSpec, StackSpec]:
    """The device and stack with their fitted multiplicative and per-call fields neutral."""
    hw = override(hw, {"memory.efficiency": 1.0, "compute.gemm.efficiency": 1.0}, "fit: neutral")
    return hw, dataclasses.replace(stack, allreduce=dataclasses.replace(stack.allreduce, call_s=0.0))


def step_terms(rows: Sequence[Row], hw: HardwareSpec, stack: StackSpec) -> tuple[StepTerms, list[list[int]]]:
    """The terms of every step of `rows`, and per row the indices of its steps (prefill
    steps, then its decode steps)."""
    unit_hw, unit_stack = neutral(hw, stack)
    predictor = Predictor(unit_hw, lambda name, _hw: unit_stack)
    memo: dict[tuple[object, ...], list[float]] = {}
    cols: list[list[float]] = []
    weight: list[float] = []
    position: list[int] = []
    in_max: list[bool] = []
    starts: list[int] = []
    counts: list[int] = []
    launches: list[Launch] = []
    step_index: dict[tuple[Any, ...], int] = {}
    row_steps: list[list[int]] = []
    for row in rows:
        coster: StepCoster = predictor.coster(row)
        prefill, decode = predictor.steps(row)
        mine = []
        for step in [*prefill, *decode]:
            key = (row.model, row.tp, tuple(row.precision.values()), step)
            if key not in step_index:
                step_index[key] = len(starts)
                starts.append(len(weight))
                pos = 0
                for kernels, repeats in coster.layer_groups(step):
                    block = []
                    for k in kernels:
                        sig = (k.name, k.flops_matmul, k.flops_vector, k.compute_dtype, k.reads, k.writes,
                               k.link_bytes, k.host_bytes, k.shape, k.collective)  # fmt: skip
                        if sig not in memo:
                            memo[sig] = kernel_terms(k, coster.device)
                        block.append(memo[sig])
                    size = len(block)
                    copies = [(0, 1.0, True)] if repeats == 1 else [(0, 1.0, True), (1, repeats - 2.0, False),
                                                                     (repeats - 1, 1.0, True)]  # fmt: skip
                    for r, w, real in copies:
                        if w == 0:
                            continue
                        for i, t in enumerate(block):
                            cols.append(t)
                            weight.append(w)
                            position.append(pos + r * size + i)
                            in_max.append(real)
                    pos += repeats * size
                counts.append(pos)
                launches.append(coster.launch(step.phase))
            mine.append(step_index[key])
        row_steps.append(mine)
    mode = np.array([0 if la.graph else 1 if la.synchronous else 2 for la in launches])
    terms = StepTerms(
        np.array(cols, dtype=np.float64),
        np.array(weight, dtype=np.float64),
        np.array(position, dtype=np.float64),
        np.array(in_max, dtype=bool),
        np.array(starts, dtype=np.int64),
        np.array(counts, dtype=np.float64),
        launches,
        mode,
    )
    return terms, row_steps


@dataclass(frozen=True)
class Values:
    """Trial values of the fitted fields in SI, each an array over the trials [T]."""

    memory_efficiency: np.ndarray
    gemm_efficiency: np.ndarray
    issue_s: np.ndarray
    ops: np.ndarray
    gap_s: np.ndarray
    step_s: np.ndarray
    call_s: np.ndarray
    request_s: np.ndarray


FIELD_ATTRS = {
    "memory.efficiency": ("memory_efficiency", 1.0),
    "compute.gemm.efficiency": ("gemm_efficiency", 1.0),
    "launch.host_issue_us": ("issue_s", 1e-6),
    "launch.ops_per_kernel": ("ops", 1.0),
    "launch.kernel_gap_us": ("gap_s", 1e-6),
    "launch.step_overhead_us": ("step_s", 1e-6),
    "allreduce.call_us": ("call_s", 1e-6),
    "prefill.request_overhead_us": ("request_s", 1e-6),
}
"""Each fittable field's Values attribute and the scale from its YAML unit to SI."""


def step_times(t: StepTerms, v: Values) -> np.ndarray:
    """[T, S] step times under trial values: engine/machine.py's kernel body and
    engine/launch.py's launch rules, on the precomputed terms."""
    c = {name: t.terms[:, j] for j, name in enumerate(COLUMNS)}
    em, eg = v.memory_efficiency[:, None], v.gemm_efficiency[:, None]
    memory = np.maximum(c["dram"] / em, c["noc"]) + c["latency"]
    shape = memory.shape
    body = np.maximum.reduce(
        [memory, c["gemm"] / eg, np.broadcast_to(c["other"], shape),
         c["link"] + c["call"] * v.call_s[:, None], np.broadcast_to(c["host"], shape)]
    ) + c["fixed"]  # fmt: skip
    weighted = body * t.weight
    sums = np.add.reduceat(weighted, t.starts, axis=1)  # [T, S]
    n = t.kernels
    graph_launch = np.array([la.graph_launch_s for la in t.launch])
    issue = (v.issue_s * v.ops)[:, None] * np.ones(len(t.launch))
    gap, step = (v.gap_s * v.ops)[:, None], v.step_s[:, None]
    graph = step + graph_launch + sums + (n - 1) * gap
    sync = step + sums + n * issue + (n - 1) * gap
    # eager: s + (n - 1) g + max over positions j of ((j + 1) h - j g + the bodies from j on)
    step_of = np.repeat(np.arange(len(t.starts)), np.diff(np.append(t.starts, len(t.weight))))
    csum = np.cumsum(weighted, axis=1)
    first = np.where(t.starts > 0, t.starts - 1, 0)
    offset = np.where(t.starts > 0, csum[:, first], 0.0)  # [T, S]: the sum before each step
    suffix = sums[:, step_of] - (csum - weighted - offset[:, step_of])
    j = t.position[None, :]
    term = (j + 1) * issue[:, step_of] - j * gap + suffix
    best = np.maximum.reduceat(np.where(t.in_max[None, :], term, -np.inf), t.starts, axis=1)
    eager = step + (n - 1) * gap + best
    return np.where(t.mode == 0, graph, np.where(t.mode == 1, sync, eager))


def row_predictions(
    rows: Sequence[Row], t: StepTerms, row_steps: Sequence[Sequence[int]], v: Values
) -> np.ndarray:
    """[T, rows] each row's metric (SI) under trial values."""
    times = step_times(t, v)
    out = np.empty((times.shape[0], len(rows)))
    for i, (row, steps) in enumerate(zip(rows, row_steps, strict=True)):
        decode = 2 if row.output_tokens >= 2 else 0
        pre, dec = steps[: len(steps) - decode], steps[len(steps) - decode :]
        ttft = v.request_s + times[:, pre].sum(axis=1) if row.metric != "tpot" else np.zeros(times.shape[0])
        tpot = times[:, dec].mean(axis=1) if dec else np.zeros(times.shape[0])
        if row.metric == "ttft":
            out[:, i] = ttft
        elif row.metric == "tpot":
            out[:, i] = tpot
        else:
            e2e = ttft + (row.output_tokens - 1) * tpot
            out[:, i] = e2e if row.metric == "e2e_latency" else row.batch * row.output_tokens / e2e
    return out


def current_values(hw: HardwareSpec, stack: StackSpec) -> dict[str, float]:
    """The fittable fields' values (YAML units) of a device and stack."""
    return {
        "memory.efficiency": hw.memory.efficiency,
        "compute.gemm.efficiency": hw.compute.gemm.efficiency,
        "launch.host_issue_us": stack.launch.host_issue_s * 1e6,
        "launch.ops_per_kernel": stack.launch.ops_per_kernel,
        "launch.kernel_gap_us": stack.launch.kernel_gap_s * 1e6,
        "launch.step_overhead_us": stack.launch.step_overhead_s * 1e6,
        "allreduce.call_us": stack.allreduce.call_s * 1e6,
        "prefill.request_overhead_us": stack.prefill.request_overhead_s * 1e6,
    }


def trial_values(base: dict[str, float], trials: dict[str, np.ndarray] | None = None) -> Values:
    """Values with every field at `base`, and the fields of `trials` at their arrays (all
    of one length: the trials)."""
    trials = trials or {}
    count = len(next(iter(trials.values()))) if trials else 1
    arrays = {}
    for path, (attr, scale) in FIELD_ATTRS.items():
        value = trials[path] if path in trials else np.full(count, base[path])
        arrays[attr] = np.asarray(value, dtype=np.float64) * scale
    return Values(**arrays)


def check_evaluator(rows: Sequence[Row], hw: HardwareSpec, stack: StackSpec) -> tuple[np.ndarray, np.ndarray]:
    """(fast evaluator, engine) predictions of `rows` at the device's and stack's own
    values: what a test compares."""
    t, row_steps = step_terms(rows, hw, stack)
    fast = row_predictions(rows, t, row_steps, trial_values(current_values(hw, stack)))[0]
    engine = Predictor(hw, lambda _name, _hw: stack)
    return fast, np.array([engine.predict(r) for r in rows])
