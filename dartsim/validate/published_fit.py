"""Fitting calibrated hardware and software-stack fields to the published measurements'
calibration rows (`dartsim validate --published --fit`).

What is fitted, per device (the data file's `split.fit` says the same):
- the device's reference stack (the stack with the most calibration rows on it) is fitted
  jointly with the hardware fields the preset lists under `calibrated` (memory and GEMM
  efficiency) and the stack's own calibrated fields;
- every other stack with at least MIN_ROWS calibration rows on the device fits its own
  calibrated fields, the hardware fixed at the reference fit.
FP8/FP16 pairs of one model separate per-byte from per-kernel costs, batch and prompt
series compute from launch, TP series the all-reduce's fixed cost. A field the rows do
not move is not fitted (said so); a field that lands at the edge of its search range
fails the fit, which is then not shipped (`Fit.ok`).

The fit evaluates rows fast from the engine's own per-kernel terms (validate/fit_terms.py;
a test checks they give the engine's prediction).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.hardware_yaml import override
from dartsim.specs.stack import StackSpec
from dartsim.validate.fit_terms import (
    StepTerms,
    current_values,
    row_predictions,
    step_terms,
    trial_values,
)
from dartsim.validate.published import Dataset, Row, StackSource, device_hardware, folder_stacks

RANGES: dict[str, tuple[float, float]] = {
    "memory.efficiency": (0.6, 1.0),
    "compute.gemm.efficiency": (0.3, 1.0),
    "launch.host_issue_us": (1.0, 30.0),
    "launch.ops_per_kernel": (1.0, 8.0),
    "launch.kernel_gap_us": (0.3, 6.0),
    "launch.step_overhead_us": (1.0, 20000.0),
    "allreduce.call_us": (1.0, 60.0),
    "prefill.request_overhead_us": (10.0, 100000.0),
}
"""The search range of every fittable field (YAML units), set from the sources before any
fit, with margin: memory efficiency from 0.6 (below every measured STREAM-triad ratio of
these parts) to 1; GEMM efficiency 0.3 to 1; host issue 1-30 us (a PyTorch CUDA launch is
"between 5-20 microseconds" on the CPU side, HTA docs; 2.6 us per asynchronous enqueue
measured, ahrefs/ocannl #488); the gap between kernels 0.3-6 us (0.58 us per CUDA-graph
node, ahrefs/ocannl #488; eager stacks 1.4-1.8 us per kernel saved by graphs in llama.cpp
#6763 and 2.1-5.2 us derived from SGLang PR #1401's graph vs eager decode); step overhead
1 us-20 ms; an all-reduce call 1-60 us (3.7 us for a custom all-reduce, 19-32 us for eager
NCCL, sgl-project/sglang #2904 and ByteDance-Seed/Triton-distributed #57); a request's
handling 10 us-100 ms; kernels run per modelled kernel 1-8 (Hugging Face eager runs about
3.5, derived from modeling_llama.py: stack_presets/pytorch-eager.yaml). A value at either
end means the rows want something else: the fit fails."""
HW_FIELDS = ("memory.efficiency", "compute.gemm.efficiency")
MIN_ROWS = 12
"""Fewest calibration rows a (stack, device) needs for its own fit."""
EDGE = 0.005
"""A value within this share (log-space for multi-decade ranges) of an end is at the edge."""
GRID = 17
SWEEPS = 10
SHRINK = 0.5
RANDOM_TRIALS = 512
STARTS = 6
SEED = 20261202
CHUNK = 32
"""Trials evaluated at once (bounds the memory of the vectorised evaluation)."""
IDENTIFIABLE_LOSS = 1e-9
"""A field whose whole range moves the loss by less than this is not fitted."""


@dataclass
class Fit:
    """One (stack, device) fit: the fitted values (YAML units), what could not be fitted,
    the rows and the rms log error before and after."""

    stack: str
    device: str
    fields: dict[str, float]
    rows: int
    rms_before: float
    rms_after: float
    not_identifiable: list[str] = field(default_factory=list)
    at_edge: list[str] = field(default_factory=list)
    reference: bool = False
    """The device's reference stack (its hardware fields fitted with it)."""

    @property
    def ok(self) -> bool:
        return not self.at_edge


def _at_edge(value: float, lo: float, hi: float) -> bool:
    if hi / lo > 4:
        span = math.log(hi / lo)
        return math.log(value / lo) < EDGE * span or math.log(hi / value) < EDGE * span
    return (value - lo) < EDGE * (hi - lo) or (hi - value) < EDGE * (hi - lo)


def _to_unit(name: str, value: np.ndarray) -> np.ndarray:
    """A field's value as a position in [0, 1] of its range (log-spaced for wide ranges)."""
    lo, hi = RANGES[name]
    return np.log(value / lo) / math.log(hi / lo) if hi / lo > 4 else (value - lo) / (hi - lo)


def _from_unit(name: str, u: np.ndarray) -> np.ndarray:
    lo, hi = RANGES[name]
    u = np.clip(u, 0.0, 1.0)
    return lo * (hi / lo) ** u if hi / lo > 4 else lo + u * (hi - lo)


def fit_terms(
    rows: Sequence[Row], t: StepTerms, row_steps: Sequence[Sequence[int]], start: dict[str, float],
    fields: Sequence[str],
) -> tuple[dict[str, float], list[str], float, float]:  # fmt: skip
    """Minimise the mean squared log error: a seeded random search of the whole box
    (RANDOM_TRIALS points, the ranges in unit coordinates), then coordinate descent from
    the STARTS best points, each sweep searching every field over a grid that shrinks
    around the best. Returns the values, the fields the rows do not move, and the rms
    before and after."""
    measured = np.log([r.seconds_or_rate for r in rows])

    def loss(trials: dict[str, np.ndarray], base: dict[str, float]) -> np.ndarray:
        count = len(next(iter(trials.values()))) if trials else 1
        out = []
        for i in range(0, count, CHUNK):
            chunk = {k: v[i : i + CHUNK] for k, v in trials.items()}
            predicted = row_predictions(rows, t, row_steps, trial_values(base, chunk))
            out.append(np.mean((np.log(np.maximum(predicted, 1e-30)) - measured) ** 2, axis=1))
        return np.concatenate(out)

    before = float(loss({}, start)[0])
    fitted: list[str] = []
    flat: list[str] = []
    for name in fields:
        probe = loss({name: _from_unit(name, np.linspace(0, 1, GRID))}, start)
        (flat if np.ptp(probe) < IDENTIFIABLE_LOSS else fitted).append(name)
    if not fitted:
        return {}, flat, math.sqrt(before), math.sqrt(before)
    rng = np.random.default_rng(SEED)
    cloud = rng.random((RANDOM_TRIALS, len(fitted)))
    cloud[0] = [float(_to_unit(n, np.array(start[n]))) for n in fitted]
    losses = loss({n: _from_unit(n, cloud[:, j]) for j, n in enumerate(fitted)}, start)
    best_loss, best = math.inf, dict(start)
    for index in np.argsort(losses)[:STARTS]:
        point = {n: float(_from_unit(n, np.array(cloud[index, j]))) for j, n in enumerate(fitted)}
        current = {**start, **point}
        width = {n: 0.5 for n in fitted}
        for _ in range(SWEEPS):
            for n in fitted:
                u0 = float(_to_unit(n, np.array(current[n])))
                grid = np.clip(np.linspace(u0 - width[n], u0 + width[n], GRID), 0.0, 1.0)
                trial = loss({n: _from_unit(n, grid)}, current)
                current[n] = float(_from_unit(n, np.array(grid[int(np.argmin(trial))])))
                width[n] *= SHRINK
        value = float(loss({}, current)[0])
        if value < best_loss:
            best_loss, best = value, current
    return {n: best[n] for n in fitted}, flat, math.sqrt(before), math.sqrt(best_loss)


def fit_pair(rows: Sequence[Row], hw: HardwareSpec, stack: StackSpec, with_hardware: bool) -> Fit:
    """The calibrated fields of `stack` on `hw` (and the hardware's with `with_hardware`)
    fitted to `rows`, the pair's calibration rows."""
    fields = [f for f in stack.calibrated if f in RANGES]
    if with_hardware:
        fields = [f for f in HW_FIELDS if f in hw.calibrated] + fields
    t, row_steps = step_terms(rows, hw, stack)
    start = current_values(hw, stack)
    values, flat, before, after = fit_terms(rows, t, row_steps, start, fields)
    edge = [name for name, value in values.items() if _at_edge(value, *RANGES[name])]
    rounded = {name: float(f"{value:.4g}") for name, value in values.items()}
    return Fit(stack.name, hw.name, rounded, len(rows), before, after, flat, edge, with_hardware)


FIT_PHRASE = "fitted by dartsim validate --published --fit"
WAS = "; was: "


def _note(fit: Fit, rows: Sequence[Row]) -> str:
    sources = ", ".join(sorted({r.source for r in rows}))
    return (
        f"{FIT_PHRASE} on {fit.stack} to the {fit.rows} calibration rows of the published set on "
        f"{fit.device} (sources: {sources}); rms log error {fit.rms_before:.3f} before, "
        f"{fit.rms_after:.3f} after"
    )


def with_fitted_hardware(hw: HardwareSpec, values: dict[str, float], note: str) -> HardwareSpec:
    """`hw` with fitted hardware values; each field's source says so, keeping what it said
    before the first fit (a re-fit replaces the note instead of stacking them)."""
    for path, value in values.items():
        section = path.rpartition(".")[0]
        prior = hw.sources.get(path) or hw.sources.get(section, "")
        if prior.startswith(FIT_PHRASE) and WAS in prior:
            prior = prior.split(WAS, 1)[1]
        hw = override(hw, {path: value}, "x")
        hw = dataclasses.replace(hw, sources={**hw.sources, path: f"{note}{WAS}{prior}"})
    return hw


def with_fitted_stack(stack: StackSpec, device: str, values: dict[str, float], note: str) -> StackSpec:
    """`stack` with `device`'s fitted values under `devices` (replacing an earlier fit's)."""
    devices = {**stack.devices, device: dict(values)}
    sources = {**stack.sources, f"devices.{device}": note}
    return dataclasses.replace(stack, devices=devices, sources=sources)


@dataclass
class FitResult:
    fits: list[Fit]
    hardware: dict[str, HardwareSpec]
    stacks: dict[str, StackSpec]
    """The stack files with every successful fit's values under `devices`."""
    skipped: list[tuple[str, str, int]]
    """(stack, device, calibration rows) pairs with too few rows to fit."""


def fit_all(data: Dataset, hw_dir: str | None = None, stack_dir: str | None = None) -> FitResult:
    """Every device's reference fit, then every other (stack, device) with enough rows."""
    from dartsim.specs.stack import load_stack_spec

    source: StackSource = folder_stacks(stack_dir)
    calibration = [r for r in data.rows if r.split == "calibration" and r.source not in data.never_fitted]
    files: dict[str, StackSpec] = {}
    hardware: dict[str, HardwareSpec] = {}
    fits, skipped = [], []
    for device in sorted({r.device for r in calibration}):
        hw = device_hardware(device, hw_dir)
        mine = [r for r in calibration if r.device == device]
        counts = Counter(r.stack for r in mine)
        order = sorted(counts, key=lambda s: (-counts[s], s))
        for index, name in enumerate(order):
            rows = [r for r in mine if r.stack == name]
            if len(rows) < MIN_ROWS:
                skipped.append((name, device, len(rows)))
                continue
            if name not in files:
                base = source(name, hw)
                files[name] = load_stack_spec(base.source_file)
            stack = files[name].for_device(device)
            fit = fit_pair(rows, hw, stack, with_hardware=index == 0)
            fits.append(fit)
            if not fit.ok:
                continue
            note = _note(fit, rows)
            hw_values = {k: v for k, v in fit.fields.items() if k in HW_FIELDS}
            stack_values = {k: v for k, v in fit.fields.items() if k not in HW_FIELDS}
            if hw_values:
                hw = with_fitted_hardware(hw, hw_values, note)
                hardware[device] = hw
            if stack_values:
                files[name] = with_fitted_stack(files[name], device, stack_values, note)
    return FitResult(fits, hardware, files, skipped)
