"""What a replay costs and how: one step (or a run of decode steps) of the batch, and
the run's configuration (stack, tensor parallelism, precision, mask application, the
device choices). Plain frozen data: engine/costing.py costs them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dartsim.engine.machine import Device, device, kernel_fusion
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.stack import StackSpec
from dartsim.workload import Execution, Precision
from dartsim.workload.policy_costs import NO_POLICY_COSTS, PolicyCosts

DEFAULT_CONTEXT_GRID = 1024
"""Summed-context spacing of the costed grid points per memoised key (tokens)."""


@dataclass(frozen=True)
class ReplayStep:
    """One step, or a run of `count` decode steps in which every sequence's context grows
    by one per step (step j of the run has contexts advanced by j)."""

    phase: str
    new_tokens: int
    contexts: tuple[int, ...]
    kept: tuple[int, ...]
    observe: bool
    mask_builds: tuple[tuple[int, ...], ...] = ()
    """Masks installed just before the (first) step (one per sequence whose epoch
    changes): the kept counts of each, for the cost of building and installing it."""
    count: int = 1
    heads: tuple[tuple[int, int], ...] | None = None
    """Per layer, the (query, KV) heads kept when a policy prunes heads; None: all."""
    policy: PolicyCosts = NO_POLICY_COSTS
    """What the traces' policy adds beyond kept neurons (weight storage, predictor, ...)."""
    news: tuple[int, ...] | None = None
    """Per-sequence new tokens where they differ (a batched or chunked prefill of prompts
    of different lengths); `new_tokens` is then their maximum."""
    completes: int = 0
    """Sequences whose prompt ends in this step: they get their first token at its end
    (0 for decode steps, whose tokens are one per sequence)."""

    def at(self, j: int) -> ReplayStep:
        """Step j of the run, alone."""
        builds = self.mask_builds if j == 0 else ()
        return replace(self, contexts=tuple(c + j for c in self.contexts), mask_builds=builds, count=1)


@dataclass(frozen=True)
class ReplayConfig:
    """How a replay runs. `stack` None runs the hardware's default software stack;
    `prefetch`, `launch` and `allreduce` left as None take the hardware's weight
    streaming and the stack's launch mode and all-reduce algorithm."""

    tp: int = 1
    prefetch: bool | None = None
    mask_apply: str = "compact"
    memoize: bool = True
    context_grid: int = DEFAULT_CONTEXT_GRID
    precision: Precision = field(default_factory=Precision)
    launch: str | None = None
    allreduce: str | None = None
    stack: StackSpec | None = None

    def device(self, hw: HardwareSpec) -> Device:
        return device(hw, self.stack, self.launch, self.prefetch)

    def execution(
        self, dev: Device, observe: bool = False, policy: PolicyCosts = NO_POLICY_COSTS
    ) -> Execution:
        """The workload model's Execution for this replay on `dev` (under `policy`): the
        stack decides fusion, the all-reduce and the attention compute format."""
        st = dev.stack
        return Execution(
            tp=self.tp,
            mask_apply="gather" if policy.per_token else self.mask_apply,
            dart_observe=observe,
            allreduce=self.allreduce or st.allreduce.algorithm,
            one_shot_max_bytes=int(st.allreduce.one_shot_max_bytes),
            weights=policy.weights,
            predictor_rank=policy.predictor_rank,
            fusion=kernel_fusion(st),
            attention_low_precision=st.attention.fp8_compute,
        )
