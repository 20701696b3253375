"""Costing a replay's steps on the device model: every step (runs of decode steps in closed
form), its mask builds, and the per-layer and per-component accounting of the run.

Capacity (which tensor-parallel degree fits) is in replay/capacity.py; turning traces
into steps in replay/steps.py; the whole job in replay/job.py.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from dartsim.engine.costing import StepCoster
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.replay.energy import with_energy
from dartsim.replay.result import (
    COMPONENTS,
    PARTS,
    Component,
    Layer,
    LayerPart,
    MaskBuild,
    RunResult,
    Totals,
)
from dartsim.replay.steps import step_count
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.workload.policy_costs import NO_POLICY_COSTS

PROGRESS_MIN_STEPS = 2000
"""Runs shorter than this finish too fast for a progress bar to help."""


def _middle_decode(steps: Sequence[ReplayStep]) -> int | None:
    """Index (over all steps) of the first decode step from the middle of the run on."""
    total = step_count(steps)
    index = 0
    for step in steps:
        last = index + step.count - 1
        if step.phase == "decode" and last >= total // 2:
            return max(index, total // 2)
        index += step.count
    return None


def run_steps(
    steps: Sequence[ReplayStep],
    spec: ModelSpec,
    hw: HardwareSpec,
    config: ReplayConfig,
    progress: bool = False,
) -> RunResult:
    """Cost every step (runs of decode steps in closed form) and each mask build."""
    coster = StepCoster(spec, hw, config)
    layers = spec.num_layers
    layer_bytes = np.zeros((layers, 2), dtype=np.int64)
    layer_flops = np.zeros((layers, 2), dtype=np.int64)
    layer_time = np.zeros((layers, 2), dtype=np.float64)
    total_bytes = total_flops = total_link = 0
    prefill_bytes = prefill_flops = prefill_link = 0  # the prefill steps' share (energy apart)
    build_bytes, build_time = 0, 0.0
    n_steps = step_count(steps)
    step_times = np.zeros(n_steps, dtype=np.float64)
    prefill = np.zeros(n_steps, dtype=bool)
    builds = []
    bar = None
    if progress and n_steps >= PROGRESS_MIN_STEPS:
        from tqdm import tqdm

        bar = tqdm(total=n_steps, desc="replaying", unit="step", file=sys.stderr)
    middle = _middle_decode(steps)
    bounds = None
    generated = 0
    index = 0
    first_tokens: list[float] = []  # each sequence's time to its first token
    request_s = coster.device.stack.prefill.request_overhead_s
    for step in steps:
        times, cost = coster.cost_run(step)
        if index == 0:
            times[0] += request_s  # the requests' handling before the first prefill
        for kept in step.mask_builds:
            seconds, moved, host, flops = coster.retrigger_cost(kept, step.policy)
            times[0] += seconds
            total_bytes += moved
            total_flops += flops
            build_bytes += moved
            build_time += seconds
            builds.append(MaskBuild(index, seconds, moved, host, flops))
        step_times[index : index + step.count] = times
        prefill[index : index + step.count] = step.phase == "prefill"
        if step.phase == "prefill":
            first_tokens += [float(step_times[: index + 1].sum())] * step.completes
        generated += step.completes if step.phase == "prefill" else len(step.contexts) * step.count
        total_bytes += cost.bytes
        total_flops += cost.flops
        total_link += cost.link_bytes
        if step.phase == "prefill":
            prefill_bytes += cost.bytes
            prefill_flops += cost.flops
            prefill_link += cost.link_bytes
        layer_bytes += cost.layer_bytes
        layer_flops += cost.layer_flops
        layer_time += cost.layer_time
        if middle is not None and index <= middle < index + step.count:
            bounds = coster.cost(step.at(middle - index)).layer_bound
        index += step.count
        if bar is not None:
            bar.update(step.count)
    if bar is not None:
        bar.close()
    decode_times = step_times[~prefill]
    total_time = float(step_times.sum())
    layer_rows = tuple(
        Layer(
            layer,
            *(
                LayerPart(
                    int(layer_bytes[layer, j]),
                    int(layer_flops[layer, j]),
                    float(layer_time[layer, j]),
                    bounds[layer][j] if bounds else None,
                )
                for j in range(len(PARTS))
            ),
        )
        for layer in range(layers)
    )
    totals = Totals(int(total_bytes), int(total_flops), total_time, int(total_link))
    result = RunResult(
        tokens=generated,
        totals=totals,
        components=components(layer_bytes, layer_flops, layer_time, totals, build_bytes, build_time),
        ttft_s=float(step_times[prefill].sum()),
        ttft_mean_s=float(np.mean(first_tokens)) if first_tokens else None,
        ttft_p99_s=float(np.percentile(first_tokens, 99)) if first_tokens else None,
        tpot_s=float(decode_times.mean()) if decode_times.size else None,
        tpot_p50_s=float(np.percentile(decode_times, 50)) if decode_times.size else None,
        tpot_p99_s=float(np.percentile(decode_times, 99)) if decode_times.size else None,
        tokens_per_s=generated / total_time if total_time > 0 else None,
        layers=layer_rows,
        mask_builds=tuple(builds),
        simulated_steps=coster.simulated_steps,
        step_times_s=step_times,
    )
    prefill_time = float(step_times[prefill].sum())
    prefill_counts = (prefill_bytes, prefill_flops, prefill_time, prefill_link)
    return with_energy(result, hw, config.precision.gemm_compute.name, config.tp, prefill_counts)


def components(
    layer_bytes: np.ndarray,
    layer_flops: np.ndarray,
    layer_time: np.ndarray,
    totals: Totals,
    build_bytes: int,
    build_time: float,
) -> dict[str, Component]:
    """The run split into attention, MLP and other, each with bytes, FLOPs, time and its
    shares of the run's bytes and time. `other` is what neither block of a layer holds:
    the embedding lookup, the norms and residual adds, the final norm, lm_head and logits
    gather, the mask builds (also given on their own as `mask_builds_*`), and their share of
    the step time. The three add up to the totals (bytes and FLOPs exactly)."""

    def share(value: float, total: float) -> float | None:
        return value / total if total else None

    parts: dict[str, Component] = {}
    for j, name in enumerate(PARTS):
        b, f, t = int(layer_bytes[:, j].sum()), int(layer_flops[:, j].sum()), float(layer_time[:, j].sum())
        parts[name] = Component(b, f, t, share(b, totals.bytes), share(t, totals.time_s))
    b = totals.bytes - parts["attention"].bytes - parts["mlp"].bytes
    f = totals.flops - parts["attention"].flops - parts["mlp"].flops
    t = totals.time_s - parts["attention"].time_s - parts["mlp"].time_s
    parts[COMPONENTS[2]] = Component(
        b, f, t, share(b, totals.bytes), share(t, totals.time_s), int(build_bytes), float(build_time)
    )
    return parts


def densified(steps: Sequence[ReplayStep], width: int) -> list[ReplayStep]:
    """The same steps with the FFN dense, every head and weight kept, and no DART or
    policy work: the dense baseline."""
    dense = None
    out = []
    for step in steps:
        if dense is None:
            dense = tuple([width] * len(step.kept))
        out.append(
            replace(step, kept=dense, observe=False, mask_builds=(), heads=None, policy=NO_POLICY_COSTS)
        )
    return out
