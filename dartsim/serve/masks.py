"""Every request carries its own recorded masks: a pool of traces, each request drawing
one, aligned to the request's own decode position; and the union a step fetches.

A request that draws trace t runs its prefill under t's prefill epoch (DART's prompt runs
dense) and its decode step p under the epoch t's decode step p ran under: its dense
collection windows and its re-triggers fall where t has them. A request longer than its
trace keeps the trace's last mask to the end (no re-trigger beyond what was recorded; the
output says how many decode steps ran past their trace).

Per layer a step fetches the FFN neurons of the union of the running requests' kept sets
(any request in a dense window makes its step dense); under tensor parallelism on the
traces' own model the busiest shard's count (Megatron splits neurons by index range). A
retargeted trace's neuron indices mean nothing on the target: the union is taken on the
traces' model and its kept fraction per layer carried to the target layer at the same
depth, as replay does (replay/steps.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dartsim.errors import UserError
from dartsim.policies import Policy, get_policy
from dartsim.replay.steps import busiest_shard_kept, check_retarget, depth_map
from dartsim.specs.model import ModelSpec
from dartsim.trace.schema import PHASE_DECODE, PHASE_PREFILL
from dartsim.trace.types import Trace
from dartsim.workload import kept_count
from dartsim.workload.policy_costs import NO_POLICY_COSTS, PolicyCosts

SYNTHETIC_TOKENS = 500
SYNTHETIC_RETRIGGERS = 2
"""A synthetic mask trace runs 500 tokens with 2 re-triggers: what the shipped real traces do
with the default DART parameters (traces/README.md: 4 re-triggers per 1k tokens)."""
SYNTHETIC_PROMPT = 128
SEED_STRIDE = 1_000_003
"""Pool member i of seed s is drawn with seed s * SEED_STRIDE + i (distinct across seeds)."""


def synthetic_pool(spec: ModelSpec, sparsity: float, size: int, seed: int) -> tuple[Trace, ...]:
    """`size` synthetic DART traces at `sparsity`, independent of one another (the
    independent-mask bound a real pool is compared with)."""
    from dartsim.policies.dart.synth import synth_trace

    return tuple(
        synth_trace(spec, SYNTHETIC_PROMPT, SYNTHETIC_TOKENS, SYNTHETIC_RETRIGGERS, sparsity, "dart",
                    seed=seed * SEED_STRIDE + i)
        for i in range(size)
    )  # fmt: skip


DENSE = -1
"""The epoch of a step that runs the FFN dense (a collection window, a dense prefill)."""


@dataclass(frozen=True)
class TraceTimeline:
    """One trace as a request replays it: its prefill epoch and, per decode step, its
    epoch; and whether each epoch's steps observe (score activations)."""

    prefill_epoch: int
    decode_epochs: np.ndarray
    prefill_observes: bool
    decode_observes: dict[int, bool]

    def epoch_at(self, position: int) -> int:
        """The epoch of decode step `position` (0-based); past the trace, its last."""
        epochs = self.decode_epochs
        if epochs.size == 0:
            return self.prefill_epoch
        return int(epochs[min(position, epochs.size - 1)])


class MaskPool:
    """The traces requests draw from, their masks, and the target model's view of them."""

    def __init__(self, traces: Sequence[Trace], target: ModelSpec, tp: int) -> None:
        if not traces:
            raise UserError("a mask pool needs at least one trace")
        policies = [get_policy(t.policy.name) for t in traces]
        for policy in policies:
            if policy.per_token:
                raise UserError(
                    f"{policy.name} masks change every token: serving them needs the union of per-token "
                    "masks across a batch, which dartsim does not model"
                )
        source = traces[0].model
        costs = {p.costs(t.policy, source.hidden_size, target) for p, t in zip(policies, traces, strict=True)}
        if len(costs) > 1:
            names = ", ".join(sorted({t.policy.name for t in traces}))
            raise UserError(
                f"the mask pool mixes policies that store or predict differently ({names}): one "
                "iteration runs one weight format, so serve them in separate runs"
            )
        self.traces = tuple(traces)
        self.policies = tuple(policies)
        retarget, source_name = check_retarget(traces, target)
        self.retargeted_from = source_name if retarget else None
        self.source_layers = source.num_layers
        self.source_width = source.intermediate_size
        self.target_width = target.intermediate_size
        self.target_layers = target.num_layers
        self.layer_of = np.array(
            depth_map(self.source_layers, target.num_layers) if retarget else range(target.num_layers)
        )
        self.tp = tp
        self.shard_aware = tp > 1 and not retarget and self.source_width % tp == 0
        self.costs: PolicyCosts = costs.pop()
        self.timelines = tuple(self._timeline(t, p) for t, p in zip(traces, policies, strict=True))
        self._masks: dict[tuple[int, int], np.ndarray] = {}
        self._kept: dict[tuple[int, int], tuple[int, ...]] = {}

    def _timeline(self, trace: Trace, policy: Policy) -> TraceTimeline:
        s = trace.steps
        if int(s.phase[0]) != PHASE_PREFILL:
            raise UserError("a trace must start with its prefill step")
        decode = s.phase[1:] == PHASE_DECODE
        epochs = s.epoch[1:][decode].astype(np.int64)
        first = int(s.epoch[0])
        observes = {int(e): policy.observes(trace, int(e), "decode") for e in np.unique(epochs)}
        return TraceTimeline(first, epochs, policy.observes(trace, first, "prefill"), observes)

    def mask(self, trace: int, epoch: int) -> np.ndarray:
        """Trace `trace`'s kept neurons under `epoch` on its own model, [L, m] as 0/1 int32."""
        key = (trace, epoch)
        if key not in self._masks:
            self._masks[key] = self.traces[trace].mask(epoch).astype(np.int32)
        return self._masks[key]

    def to_target(self, counts: np.ndarray) -> tuple[int, ...]:
        """Kept neurons per target layer from kept counts per source layer."""
        if self.layer_of.size == counts.size and self.source_width == self.target_width:
            return tuple(int(c) for c in counts[self.layer_of])
        ratios = counts.astype(np.float64) / self.source_width
        return tuple(kept_count(float(ratios[s]), self.target_width) for s in self.layer_of)

    def kept(self, trace: int, epoch: int) -> tuple[int, ...]:
        """One request's own kept neurons per target layer (what building its mask costs)."""
        key = (trace, epoch)
        if key not in self._kept:
            if epoch < 0:
                self._kept[key] = (self.target_width,) * self.target_layers
            else:
                self._kept[key] = self.to_target(self.traces[trace].epochs.kept[epoch])
        return self._kept[key]


class UnionTracker:
    """The running requests' masks as per-neuron holder counts, so that a join, a leave or
    a mask switch costs one array add and the union is read only when it changed."""

    def __init__(self, pool: MaskPool) -> None:
        self.pool = pool
        self.counts = np.zeros((pool.source_layers, pool.source_width), dtype=np.int32)
        self.dense_holders = 0
        self.holders = 0
        self.held: dict[int, tuple[int, int]] = {}
        self._union: tuple[int, ...] | None = None

    def set(self, request: int, trace: int, epoch: int) -> None:
        """Request `request` now runs under (trace, epoch)."""
        old = self.held.get(request)
        if old == (trace, epoch):
            return
        if old is not None:
            self._drop(old)
        self.held[request] = (trace, epoch)
        self.holders += 1
        if epoch < 0:
            self.dense_holders += 1
        else:
            self.counts += self.pool.mask(trace, epoch)
        self._union = None

    def remove(self, request: int) -> None:
        old = self.held.pop(request, None)
        if old is not None:
            self._drop(old)
            self._union = None

    def _drop(self, held: tuple[int, int]) -> None:
        trace, epoch = held
        self.holders -= 1
        if epoch < 0:
            self.dense_holders -= 1
        else:
            self.counts -= self.pool.mask(trace, epoch)

    @property
    def dense(self) -> bool:
        return self.dense_holders > 0 or self.holders == 0

    def union(self) -> tuple[int, ...]:
        """Kept neurons per target layer that a step of the running requests fetches."""
        if self._union is None:
            pool = self.pool
            if self.dense:
                self._union = (pool.target_width,) * pool.target_layers
            else:
                held = self.counts > 0
                counts = busiest_shard_kept(held, pool.tp) if pool.shard_aware else held.sum(axis=-1)
                self._union = pool.to_target(counts)
        return self._union


class DenseMasks:
    """No masks: every step runs the FFN dense (the dense baseline)."""

    costs: PolicyCosts = NO_POLICY_COSTS
