"""Replaying traces on the device model.

A trace (or several, as one batch) becomes a list of steps: phase, tokens, per-sequence
contexts, and per layer the FFN neurons the step must fetch (the union over the batch of
the sequences' kept sets). Steps that differ only in context cost an affine function of
the summed context: within a key (phase, batch, new tokens, kept neurons per layer), the
replay simulates the step at grid points of the summed context and interpolates, while
bytes and FLOPs of every step stay exact (they are affine in the context; the check is
explicit and falls back to the workload model when it fails). `memoize=False` simulates
every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dartsim.engine.machine import Device, device
from dartsim.engine.sim import StepResult, simulate_step
from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import unpack_mask
from dartsim.workload import Execution, Precision, StepShape, kept_count, retrigger_kernels, step_kernels
from dartsim.workload.kernels import Component

PARTS = ("attention", "mlp")
"""Per-layer split reported by replay; norms and residual adds count towards totals only."""
DEFAULT_CONTEXT_GRID = 1024
"""Summed-context spacing of the simulated grid points per memoised key (tokens)."""


@dataclass(frozen=True)
class ReplayStep:
    phase: str
    new_tokens: int
    contexts: tuple[int, ...]
    kept: tuple[int, ...]
    observe: bool
    mask_builds: tuple[tuple[int, ...], ...] = ()
    """Masks installed just before this step (one per sequence whose epoch changes): the
    kept counts of each, for the cost of building and installing it."""


@dataclass(frozen=True)
class ReplayConfig:
    """How a replay runs. `prefetch`, `launch` and `allreduce` left as None take the
    hardware file's choices (on_chip.weight_prefetch, launch.mode, link.allreduce_algorithm)."""

    tp: int = 1
    prefetch: bool | None = None
    mask_apply: str = "compact"
    memoize: bool = True
    context_grid: int = DEFAULT_CONTEXT_GRID
    precision: Precision = field(default_factory=Precision)
    launch: str | None = None
    allreduce: str | None = None

    def execution(self, hw: HardwareSpec, observe: bool = False) -> Execution:
        """The workload model's Execution for this replay on `hw`."""
        return Execution(
            tp=self.tp,
            mask_apply=self.mask_apply,
            dart_observe=observe,
            allreduce=self.allreduce or hw.link.allreduce_algorithm,
            one_shot_max_bytes=int(hw.link.one_shot_max_bytes),
        )


@dataclass
class StepCost:
    """What one step costs: totals, and per layer [L, 2] (attention, mlp) arrays."""

    time_s: float
    bytes: int
    flops: int
    link_bytes: int
    layer_bytes: np.ndarray
    layer_flops: np.ndarray
    layer_time: np.ndarray
    layer_bound: list[tuple[str, str]]


def _layer_arrays(
    result: StepResult, layers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Per layer and part: bytes, FLOPs, time and bound.

    With weight streaming a kernel's weights load while earlier kernels run, so the time a
    kernel waits says little about what it costs. The step's simulated time is therefore
    apportioned to kernels in proportion to their standalone demand (the largest of their
    resource times plus launch); the shares add up to the step time.
    """
    total_demand = sum(t.demand_s for t in result.timings)
    scale = result.time_s / total_demand if total_demand > 0 else 0.0
    b = np.zeros((layers, 2), dtype=np.int64)
    f = np.zeros((layers, 2), dtype=np.int64)
    t = np.zeros((layers, 2), dtype=np.float64)
    bound_time: list[list[dict[str, float]]] = [[{}, {}] for _ in range(layers)]
    for timing in result.timings:
        k = timing.kernel
        if k.layer is None or k.component not in (Component.ATTENTION, Component.MLP):
            continue
        j = 0 if k.component is Component.ATTENTION else 1
        b[k.layer, j] += k.bytes
        f[k.layer, j] += k.flops
        duration = timing.demand_s * scale
        t[k.layer, j] += duration
        tally = bound_time[k.layer][j]
        tally[timing.bound] = tally.get(timing.bound, 0.0) + duration
    bounds = [
        tuple(max(cell, key=lambda key: cell[key]) if cell else "none" for cell in row)  # type: ignore[misc]
        for row in bound_time
    ]
    return b, f, t, bounds  # type: ignore[return-value]


class StepCoster:
    """Costs steps of one model on one device, memoising simulated times."""

    def __init__(self, spec: ModelSpec, hw: HardwareSpec, config: ReplayConfig) -> None:
        self.spec = spec
        self.hw = hw
        self.config = config
        self.device: Device = device(hw, config.launch, config.prefetch)
        self.execution = config.execution(hw)
        self._memo: dict[tuple[Any, ...], StepCost] = {}
        self.simulated_steps = 0

    def kernels(self, step: ReplayStep, contexts: tuple[int, ...]) -> list:  # type: ignore[type-arg]
        shape = StepShape(step.phase, len(contexts), step.new_tokens, max(contexts), contexts)
        execution = self.config.execution(self.hw, step.observe)
        return step_kernels(self.spec, shape, list(step.kept), self.config.precision, execution=execution)

    def simulate(
        self, step: ReplayStep, contexts: tuple[int, ...], timeline: bool = False
    ) -> tuple[StepCost, StepResult]:
        kernels = self.kernels(step, contexts)
        result = simulate_step(kernels, self.device, timeline=timeline)
        self.simulated_steps += 1
        b, f, t, bounds = _layer_arrays(result, self.spec.num_layers)
        cost = StepCost(result.time_s, result.dram_bytes, result.flops, result.link_bytes, b, f, t, bounds)
        return cost, result

    def _at(self, step: ReplayStep, total_context: int) -> StepCost:
        key = (step.phase, len(step.contexts), step.new_tokens, step.kept, step.observe, total_context)
        cached = self._memo.get(key)
        if cached is None:
            cached = self.simulate(step, _spread(total_context, len(step.contexts)))[0]
            self._memo[key] = cached
        return cached

    def cost(self, step: ReplayStep) -> StepCost:
        if not self.config.memoize:
            return self.simulate(step, step.contexts)[0]
        batch = len(step.contexts)
        total = sum(step.contexts)
        grid = self.config.context_grid * batch
        low_limit = batch * step.new_tokens
        x0 = max(low_limit, (total // grid) * grid)
        if x0 == total:
            return self._at(step, total)
        x1 = x0 + grid
        a, b = self._at(step, x0), self._at(step, x1)
        w = (total - x0) / (x1 - x0)
        exact = _affine_int(a.bytes, b.bytes, total - x0, x1 - x0) is not None
        ints = [
            _affine_int(a.bytes, b.bytes, total - x0, x1 - x0),
            _affine_int(a.flops, b.flops, total - x0, x1 - x0),
            _affine_int(a.link_bytes, b.link_bytes, total - x0, x1 - x0),
        ]
        lb = _affine_array(a.layer_bytes, b.layer_bytes, total - x0, x1 - x0)
        lf = _affine_array(a.layer_flops, b.layer_flops, total - x0, x1 - x0)
        if not exact or any(v is None for v in ints) or lb is None or lf is None:
            # Not affine (sub-byte formats round per tensor): cost this step exactly.
            return self.simulate(step, step.contexts)[0]
        return StepCost(
            time_s=a.time_s + w * (b.time_s - a.time_s),
            bytes=ints[0],  # type: ignore[arg-type]
            flops=ints[1],  # type: ignore[arg-type]
            link_bytes=ints[2],  # type: ignore[arg-type]
            layer_bytes=lb,
            layer_flops=lf,
            layer_time=a.layer_time + w * (b.layer_time - a.layer_time),
            layer_bound=a.layer_bound if w < 0.5 else b.layer_bound,
        )

    def retrigger_cost(self, kept: tuple[int, ...]) -> tuple[float, int, int]:
        """(time_s, DRAM bytes, host bytes) of installing a mask with these kept counts."""
        key = ("retrigger", kept)
        if key not in self._memo:
            kernels = retrigger_kernels(self.spec, list(kept), self.config.precision, self.execution)
            result = simulate_step(kernels, self.device, prefetch=False)
            self._memo[key] = (result.time_s, result.dram_bytes, result.host_bytes)  # type: ignore[assignment]
        return self._memo[key]  # type: ignore[return-value]


def _spread(total: int, batch: int) -> tuple[int, ...]:
    """`batch` contexts summing to `total`, as equal as possible (largest first)."""
    q, extra = divmod(total, batch)
    return tuple(q + 1 if i < extra else q for i in range(batch))


def _affine_int(a: int, b: int, num: int, den: int) -> int | None:
    value, rest = divmod((b - a) * num, den)
    return None if rest else a + value


def _affine_array(a: np.ndarray, b: np.ndarray, num: int, den: int) -> np.ndarray | None:
    scaled = (b - a) * num
    if np.any(scaled % den):
        return None
    return a + scaled // den


# -- building steps from traces ---------------------------------------------------------------


def depth_map(source_layers: int, target_layers: int) -> list[int]:
    """For each target layer, the source layer at the same normalised depth."""
    if target_layers == 1 or source_layers == 1:
        return [0] * target_layers
    return [round(layer / (target_layers - 1) * (source_layers - 1)) for layer in range(target_layers)]


@dataclass
class TraceView:
    """One trace as the replay needs it: steps, epoch of each step, per-epoch masks."""

    trace: dict[str, Any]

    @property
    def steps(self) -> dict[str, torch.Tensor]:
        return self.trace["steps"]

    def mask(self, epoch: int) -> torch.Tensor:
        """Bool [L, m] kept set of one epoch (unpacked on demand: only unions need it)."""
        width = self.trace["model"]["intermediate_size"]
        return unpack_mask(self.trace["epochs"]["masks"][epoch], width)

    def kept(self, epoch: int) -> torch.Tensor:
        return self.trace["epochs"]["kept"][epoch]


def check_retarget(traces: Sequence[dict[str, Any]], target: ModelSpec) -> tuple[bool, str]:
    """Whether the traces' model differs from `target`; errors if they cannot be replayed on it."""
    names = {t["model"]["name"] for t in traces}
    shapes = {(t["model"]["num_layers"], t["model"]["intermediate_size"]) for t in traces}
    if len(names) > 1 or len(shapes) > 1:
        raise UserError(f"traces from different models cannot form one batch: {', '.join(sorted(names))}")
    longest = max(int(t["steps"]["context_len"].max()) for t in traces)
    if longest > target.max_position_embeddings:
        raise UserError(
            f"the traces reach a context of {longest} positions, beyond {target.name}'s "
            f"{target.max_position_embeddings}: they cannot be retargeted to it"
        )
    source = traces[0]["model"]
    same = (
        source["num_layers"] == target.num_layers
        and source["intermediate_size"] == target.intermediate_size
        and source["hidden_size"] == target.hidden_size
    )
    return (not same), source["name"]


def busiest_shard_kept(mask: torch.Tensor, tp: int) -> torch.Tensor:
    """Per layer, `tp` times the kept neurons of the busiest of `tp` contiguous FFN shards
    (Megatron splits neurons by index range): [L, m] bool -> [L] int. Passed as a layer's
    kept count, the workload model's even split then gives that device's exact share."""
    layers, width = mask.shape
    per_shard = mask.reshape(layers, tp, width // tp).sum(dim=-1)
    return per_shard.max(dim=-1).values * tp


def build_steps(
    traces: Sequence[dict[str, Any]], target: ModelSpec, retarget: bool, tp: int = 1
) -> list[ReplayStep]:
    """The batch's steps: each trace's prefill alone, then decode steps in lockstep (a
    sequence that has finished drops out of the batch).

    Under tensor parallelism (`tp` > 1) on the traces' own model, each layer's kept count
    is that of the busiest device given where the kept neurons fall; a retargeted trace's
    neuron indices mean nothing on the target, so its kept neurons are split evenly.
    """
    views = [TraceView(t) for t in traces]
    source_layers = traces[0]["model"]["num_layers"]
    source_width = traces[0]["model"]["intermediate_size"]
    layer_of = depth_map(source_layers, target.num_layers) if retarget else list(range(target.num_layers))
    m = target.intermediate_size
    dense = tuple([m] * target.num_layers)
    union_cache: dict[tuple[tuple[int, int], ...], tuple[int, ...]] = {}

    def kept_for(active: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """Kept neurons per target layer: the union of the active sequences' masks."""
        if any(epoch < 0 for _, epoch in active):
            return dense
        if active not in union_cache:
            first, first_epoch = active[0]
            shard_aware = tp > 1 and not retarget and source_width % tp == 0
            if len(active) == 1 and not shard_aware:
                counts = views[first].kept(first_epoch)
            else:
                union = views[first].mask(first_epoch)
                for index, epoch in active[1:]:
                    union |= views[index].mask(epoch)
                counts = busiest_shard_kept(union, tp) if shard_aware else union.sum(dim=-1)
            ratios = counts.double() / source_width
            union_cache[active] = tuple(
                kept_count(float(ratios[layer_of[i]]), m) for i in range(target.num_layers)
            )
        return union_cache[active]

    def observing(view: TraceView, epoch: int) -> bool:
        return epoch < 0 and view.trace["dart"].get("mode", "dart") != "dense"

    steps: list[ReplayStep] = []
    decode_lists = []
    for index, view in enumerate(views):
        s = view.steps
        if int(s["phase"][0]) != 0:
            raise UserError("a trace must start with its prefill step")
        epoch = int(s["epoch"][0])
        prompt_in_ref = bool(view.trace["dart"].get("prompt_in_reference", False))
        steps.append(
            ReplayStep(
                "prefill",
                int(s["tokens"][0]),
                (int(s["context_len"][0]),),
                kept_for(((index, epoch),)),
                prompt_in_ref and observing(view, epoch),
            )
        )
        decode_lists.append(
            [
                (c, e)
                for p, c, e in zip(
                    s["phase"][1:].tolist(),
                    s["context_len"][1:].tolist(),
                    s["epoch"][1:].tolist(),
                    strict=True,
                )
                if p == 1
            ]
        )
    last_epoch = [int(v.steps["epoch"][0]) for v in views]
    longest = max(len(d) for d in decode_lists)
    for j in range(longest):
        active = tuple((i, d[j][1]) for i, d in enumerate(decode_lists) if j < len(d))
        contexts = tuple(decode_lists[i][j][0] for i, _ in active)
        builds = []
        for i, epoch in active:
            if epoch >= 0 and epoch != last_epoch[i]:
                builds.append(kept_for(((i, epoch),)))
            last_epoch[i] = epoch
        steps.append(
            ReplayStep(
                "decode",
                1,
                contexts,
                kept_for(active),
                any(observing(views[i], e) for i, e in active),
                tuple(builds),
            )
        )
    return steps
