"""What one serving iteration costs on the device model: the engine's step costing
(engine/costing.py) applied to a mixed batch, with the memoisation a long serving run
needs kept bounded.

An iteration is the sequences the scheduler runs in it, each with its new tokens (1 for a
decode, a prompt chunk for a prefill) and its context after the step, and the FFN neurons
per layer that the union of their masks keeps. A pure decode iteration is costed as replay
costs decode steps (an affine interpolation in the summed context between grid points that
are costed exactly); an iteration with prompt tokens in it is costed exactly from the
engine's cached blocks, under the stack's prefill launch rule.

The union's kept count per layer is rounded up to a multiple of 1/`KEPT_LEVELS` of the FFN
width before costing, so that iterations share costed blocks: it overstates MLP weight
bytes by less than 1/`KEPT_LEVELS` of the dense MLP's (the output's `mean_kept_fraction`
is the rounded, charged figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dartsim.engine.costing import StepCoster
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.workload.policy_costs import PolicyCosts

KEPT_LEVELS = 256
"""Kept counts are charged in steps of 1/256 of the FFN width (module docstring)."""
MAX_CACHED = 200_000
"""Costed steps and blocks kept before the caches are emptied (bounds a long run's memory;
the results do not depend on it: every cached value is exact)."""


@dataclass(frozen=True)
class IterationCost:
    time_s: float
    bytes: int
    flops: int
    link_bytes: int


class IterationCoster:
    """Costs iterations of one model on one device (one replica)."""

    def __init__(self, spec: ModelSpec, hw: HardwareSpec, config: ReplayConfig, costs: PolicyCosts) -> None:
        self.coster = StepCoster(spec, hw, config)
        self.costs = costs
        self.width = spec.intermediate_size
        self.quantum = -(-self.width // KEPT_LEVELS)

    def charged(self, kept: tuple[int, ...]) -> tuple[int, ...]:
        """`kept` rounded up to the charging grid (never above the width)."""
        q, m = self.quantum, self.width
        return tuple(min(m, -(-k // q) * q) for k in kept)

    def cost(
        self, news: Sequence[int], contexts: Sequence[int], kept: tuple[int, ...], observe: bool
    ) -> IterationCost:
        """One iteration: sequence i gets news[i] tokens and ends at contexts[i]."""
        self.coster.trim(MAX_CACHED)
        if max(news) == 1:
            step = ReplayStep("decode", 1, tuple(contexts), kept, observe, policy=self.costs)
            cost = self.coster.cost(step)
        else:
            pairs = sorted(zip(news, contexts, strict=True), reverse=True)
            n = tuple(p[0] for p in pairs)
            ctx = tuple(p[1] for p in pairs)
            step = ReplayStep(
                "prefill", n[0], ctx, kept, observe, policy=self.costs, news=n if len(set(n)) > 1 else None
            )
            c = self.coster
            cost = c.decomposed(step, ctx) if c.blockwise else c.simulate(step, ctx)[0]
        return IterationCost(cost.time_s, cost.bytes, cost.flops, cost.link_bytes)

    def mask_build(self, kept: tuple[int, ...]) -> tuple[float, int, int, int]:
        """(time_s, DRAM bytes, FLOPs, host bytes) of building and installing one request's mask."""
        seconds, moved, host, flops = self.coster.retrigger_cost(kept, self.costs)
        return seconds, moved, flops, host
