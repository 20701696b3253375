"""Replay driver: steps in, the report contract (totals, TTFT, TPOT, per layer, re-triggers) out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from dartsim.engine.costing import PARTS, ReplayConfig, ReplayStep, StepCoster
from dartsim.engine.steps import step_count
from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.workload import Execution, Precision, StepShape, device_spec, step_kernels
from dartsim.workload.execution import check_tensor_parallel
from dartsim.workload.kernels import TensorKind
from dartsim.workload.policy_costs import NO_POLICY_COSTS

TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
PROGRESS_MIN_STEPS = 2000


def memory_needed_bytes(spec: ModelSpec, precision: Precision, tp: int, kv_positions: int) -> int:
    """Per-device bytes of all weights and of the KV cache for `kv_positions` cached
    positions summed over the batch, from the workload model: a batch-1 decode step reads
    every weight once, except the embedding table (one row). The table is split by
    vocabulary like the lm_head; with tied embeddings it is the lm_head's weight and is
    not counted twice."""
    execution = Execution(tp=tp)
    kernels = step_kernels(spec, StepShape.decode(1, 2), precision=precision, execution=execution)
    embed = next(k for k in kernels if k.name == "embed_tokens")
    weights = sum(k.bytes_of_kind(TensorKind.WEIGHT) for k in kernels if k is not embed)
    if not spec.tie_word_embeddings:
        weights += embed.bytes_of_kind(TensorKind.WEIGHT) * device_spec(spec, tp).vocab_size
    kv_per_position = sum(
        t.bytes for k in kernels if k.name == "attention" for t in k.writes if t.kind is TensorKind.KV_CACHE
    )
    return weights + kv_per_position * kv_positions


def parse_tp(requested: str) -> int:
    """A --tp value other than 'auto' as a positive integer, or a one-line user error."""
    try:
        tp = int(requested)
    except ValueError:
        raise UserError(f"--tp must be a positive integer or 'auto', got {requested!r}") from None
    if tp <= 0:
        raise UserError(f"--tp must be a positive integer or 'auto', got {requested!r}")
    return tp


def choose_tp(
    spec: ModelSpec, hw: HardwareSpec, precision: Precision, requested: str, kv_positions: int
) -> int:
    """`--tp auto` picks the smallest degree whose shard fits; an explicit degree that does
    not fit is an error saying which would."""
    capacity = hw.memory.capacity_bytes
    fits = []
    for tp in TP_CANDIDATES:
        try:
            check_tensor_parallel(spec, tp)
        except UserError:
            continue
        if memory_needed_bytes(spec, precision, tp, kv_positions) <= capacity:
            fits.append(tp)
    if requested == "auto":
        if not fits:
            raise UserError(
                f"{spec.name} does not fit {hw.name} at any tensor-parallel degree up to {TP_CANDIDATES[-1]}"
            )
        return fits[0]
    tp = parse_tp(requested)
    check_tensor_parallel(spec, tp)
    need = memory_needed_bytes(spec, precision, tp, kv_positions)
    if need > capacity:
        hint = f"--tp {fits[0]} would fit" if fits else "no degree up to 64 fits"
        raise UserError(
            f"{spec.name} needs {need / 1e9:.1f} GB per device at --tp {tp} (weights and KV cache), "
            f"{hw.name} has {capacity / 1e9:.0f} GB: {hint}"
        )
    return tp


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
) -> dict[str, Any]:
    """Cost every step (runs of decode steps in closed form); returns the replay
    contract's numbers (without identity fields)."""
    coster = StepCoster(spec, hw, config)
    layers = spec.num_layers
    layer_bytes = np.zeros((layers, 2), dtype=np.int64)
    layer_flops = np.zeros((layers, 2), dtype=np.int64)
    layer_time = np.zeros((layers, 2), dtype=np.float64)
    total_bytes = total_flops = total_link = 0
    build_bytes, build_time = 0, 0.0
    n_steps = step_count(steps)
    step_times = np.zeros(n_steps, dtype=np.float64)
    prefill = np.zeros(n_steps, dtype=bool)
    retriggers = []
    bar = None
    if progress and n_steps >= PROGRESS_MIN_STEPS:
        from tqdm import tqdm

        bar = tqdm(total=n_steps, desc="replaying", unit="step", file=sys.stderr)
    middle = _middle_decode(steps)
    bounds = None
    generated = 0
    index = 0
    for step in steps:
        times, cost = coster.cost_run(step)
        for kept in step.mask_builds:
            seconds, moved, host = coster.retrigger_cost(kept, step.policy)
            times[0] += seconds
            total_bytes += moved
            build_bytes += moved
            build_time += seconds
            retriggers.append({"step": index, "time_s": seconds, "bytes": moved, "host_bytes": host})
        step_times[index : index + step.count] = times
        prefill[index : index + step.count] = step.phase == "prefill"
        generated += 1 if step.phase == "prefill" else len(step.contexts) * step.count
        total_bytes += cost.bytes
        total_flops += cost.flops
        total_link += cost.link_bytes
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
    layer_rows = []
    for layer in range(layers):
        row: dict[str, Any] = {"layer": layer}
        for j, part in enumerate(PARTS):
            row[part] = {
                "bytes": int(layer_bytes[layer, j]),
                "flops": int(layer_flops[layer, j]),
                "time_s": float(layer_time[layer, j]),
                "bound": bounds[layer][j] if bounds else None,
            }
        layer_rows.append(row)
    totals = {"bytes": int(total_bytes), "flops": int(total_flops), "time_s": total_time}
    return {
        "tokens": generated,
        "components": components(layer_bytes, layer_flops, layer_time, totals, build_bytes, build_time),
        "totals": {
            "bytes": int(total_bytes),
            "flops": int(total_flops),
            "time_s": total_time,
            "link_bytes": int(total_link),
        },
        "ttft_s": float(step_times[prefill].sum()),
        "tpot_s": float(decode_times.mean()) if decode_times.size else None,
        "tpot_p50_s": float(np.percentile(decode_times, 50)) if decode_times.size else None,
        "tpot_p99_s": float(np.percentile(decode_times, 99)) if decode_times.size else None,
        "tokens_per_s": generated / total_time if total_time > 0 else None,
        "layers": layer_rows,
        "retriggers": retriggers,
        "simulated_steps": coster.simulated_steps,
        "step_times_s": step_times,
    }


COMPONENTS = ("attention", "mlp", "other")
"""How a run's totals split: the layers' attention and MLP blocks, and everything else."""


def components(
    layer_bytes: np.ndarray,
    layer_flops: np.ndarray,
    layer_time: np.ndarray,
    totals: dict[str, Any],
    build_bytes: int,
    build_time: float,
) -> dict[str, dict[str, Any]]:
    """The run split into attention, MLP and other, each with bytes, FLOPs, time and its
    shares of the run's bytes and time. `other` is what neither block of a layer holds:
    the embedding lookup, the norms and residual adds, the final norm, lm_head and logits
    gather, the mask builds (also given on their own as `mask_builds_*`), and their share of
    the step time. The three add up to the totals (bytes and FLOPs exactly)."""
    parts: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(COMPONENTS[:2]):
        parts[name] = {
            "bytes": int(layer_bytes[:, j].sum()),
            "flops": int(layer_flops[:, j].sum()),
            "time_s": float(layer_time[:, j].sum()),
        }
    parts["other"] = {
        key: totals[key] - parts["attention"][key] - parts["mlp"][key] for key in ("bytes", "flops", "time_s")
    }
    parts["other"]["mask_builds_bytes"] = int(build_bytes)
    parts["other"]["mask_builds_time_s"] = float(build_time)
    for part in parts.values():
        part["share_bytes"] = part["bytes"] / totals["bytes"] if totals["bytes"] else None
        part["share_time"] = part["time_s"] / totals["time_s"] if totals["time_s"] else None
    return parts


def run_with_dense(
    steps: Sequence[ReplayStep], spec: ModelSpec, hw: HardwareSpec, config: ReplayConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The steps as recorded and their dense baseline (`densified`), each through
    `run_steps`: what every comparison of DART against dense replays."""
    sparse = run_steps(steps, spec, hw, config)
    dense = run_steps(densified(steps, spec.intermediate_size), spec, hw, config)
    return sparse, dense


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
