"""Costing replay steps: what one step (or a run of decode steps) takes on a device.

A step is costed by simulating its kernels (engine/sim.py). Without a weight streamer it
is costed from cached parts instead, with the same result. Where the stack's graphs cover
the step or the host is synchronous, a step takes

    launch.fixed_s + sum over kernels of (launch overhead + body) - one kernel gap

(engine/launch.py), so a step is the sum of its blocks' costs: the prologue, each layer's
attention block (the same in every layer but the first at a given context), each layer's
MLP block (depending only on its kept neurons and the step's tokens), and the epilogue.
Steps a stack issues eagerly take launch.py's closed form over the same blocks' kernel
bodies in order. Each block is built by the workload model once and cached; a test
checks that both ways give the same step. With a streamer every step is simulated.

Steps that differ only in their (summed) context cost an affine function of it: within a
key (phase, batch, new tokens, kept neurons per layer, DART observation) the coster costs
grid points of the summed context and interpolates, while bytes and FLOPs stay exact (the
check is explicit; a step for which it fails is costed on its own). A run of decode steps
is accounted in closed form, cell of the grid by cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dartsim.engine.blocks import Block, block_arrays, layer_arrays
from dartsim.engine.launch import Launch, eager_step_time
from dartsim.engine.machine import Device, KernelCost, body_time
from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.engine.sim import StepResult, costed, launch_for, simulate_step
from dartsim.engine.step_cost import StepCost, affine_array, affine_int, closed_form, summed
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.workload import StepShape, retrigger_kernels, step_kernels
from dartsim.workload.kernels import Kernel
from dartsim.workload.model import attention_block, mlp_block, step_epilogue, step_prologue
from dartsim.workload.policy_costs import NO_POLICY_COSTS, PolicyCosts

MASK_BUILD_PHASE = "mask_build"
"""Mask builds run between steps, issued by the host (no stack's graphs cover them)."""


class StepCoster:
    """Costs steps of one model on one device, memoising costed steps and blocks."""

    def __init__(self, spec: ModelSpec, hw: HardwareSpec, config: ReplayConfig) -> None:
        self.spec = spec
        self.hw = hw
        self.config = config
        self.device: Device = config.device(hw)
        self.execution = config.execution(self.device)
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._kernel_costs: dict[tuple[object, ...], tuple[KernelCost, float, str]] = {}
        self._blocks: dict[tuple[Any, ...], Block] = {}
        self.simulated_steps = 0

    def trim(self, limit: int) -> None:
        """Empty the caches once they hold more than `limit` entries (a long serving run's
        memory stays bounded; every cached value is exact, so results do not change)."""
        if len(self._memo) + len(self._blocks) > limit:
            self._memo.clear()
            self._blocks.clear()

    # -- one step -------------------------------------------------------------------------

    def launch(self, phase: str) -> Launch:
        return launch_for(self.device, phase)

    def additive(self, phase: str = "decode") -> bool:
        """Whether `phase` steps take the sum of their kernels' demands (module docstring)."""
        return not self.device.prefetch and self.launch(phase).additive

    @property
    def blockwise(self) -> bool:
        """Whether steps are costed from cached blocks: without a weight streamer, under any
        launch rule (additive, or eager's closed form over the blocks' kernel bodies)."""
        return not self.device.prefetch

    def _shape(self, step: ReplayStep, contexts: tuple[int, ...]) -> StepShape:
        return StepShape(step.phase, len(contexts), step.new_tokens, max(contexts), contexts, step.news)

    def kernels(self, step: ReplayStep, contexts: tuple[int, ...]) -> list[Kernel]:
        execution = self.config.execution(self.device, step.observe, step.policy)
        shape = self._shape(step, contexts)
        heads = None if step.heads is None else list(step.heads)
        return step_kernels(
            self.spec, shape, list(step.kept), self.config.precision, execution=execution, heads=heads
        )

    def simulate(
        self, step: ReplayStep, contexts: tuple[int, ...], timeline: bool = False
    ) -> tuple[StepCost, StepResult]:
        """The step's kernels through the device model, kernel by kernel."""
        result = simulate_step(self.kernels(step, contexts), self.device, timeline=timeline, phase=step.phase)
        self.simulated_steps += 1
        b, f, t, bounds = layer_arrays(result, self.spec.num_layers)
        cost = StepCost(result.time_s, result.dram_bytes, result.flops, result.link_bytes, b, f, t, bounds)
        return cost, result

    def _block(self, key: tuple[Any, ...], build: Any) -> Block:
        block = self._blocks.get(key)
        if block is None:
            block = Block()
            kernels = build()
            phase = key[1]
            for kernel, (cost, demand, bound) in zip(
                kernels, costed(kernels, self.device, self._kernel_costs, phase), strict=True
            ):
                block.add(kernel, demand, bound, body_time(cost, self.device))
            self._blocks[key] = block
        return block

    def decomposed(self, step: ReplayStep, contexts: tuple[int, ...]) -> StepCost:
        """The step from cached blocks (no weight streamer: see the module docstring)."""
        if not self.blockwise:
            raise ValueError("block costing needs a device without a weight streamer")
        spec, prec = self.spec, self.config.precision
        run = self.config.execution(self.device, step.observe, step.policy)
        shape = self._shape(step, contexts)
        tokens = (step.phase, len(contexts), step.new_tokens, step.news, step.policy)
        # the prologue, the epilogue and the MLP see only the step's token and sequence
        # counts (workload/model.py), so their blocks are shared across shapes that agree
        flat = (step.phase, shape.tokens, shape.batch, step.policy)
        pro = self._block(("pro", *flat), lambda: step_prologue(spec, shape, prec, run))
        epi = self._block(("epi", *flat), lambda: step_epilogue(spec, shape, prec, run))
        heads = step.heads or (None,) * spec.num_layers
        # layer 0 may differ from the others (a fused add + norm has nothing to add there)
        firsts = [min(layer, 1) for layer in range(spec.num_layers)]
        atts = [
            self._block(
                ("att", *tokens, contexts, h, f),
                lambda h=h, f=f: attention_block(spec, shape, f, prec, None, run, h),
            )
            for f, h in zip(firsts, heads, strict=True)
        ]
        mlps = [
            self._block(
                ("mlp", *flat, kept, step.observe),
                lambda k=kept: mlp_block(spec, shape, 0, k, prec, None, run),
            )
            for kept in step.kept
        ]
        layers = [
            Block(
                a.demand_s + m.demand_s,
                a.bytes + m.bytes,
                a.flops + m.flops,
                a.link_bytes + m.link_bytes,
                [a.part_bytes[0], m.part_bytes[1]],
                [a.part_flops[0], m.part_flops[1]],
                [a.part_demand[0], m.part_demand[1]],
                [a.part_bounds[0], m.part_bounds[1]],
            )
            for a, m in zip(atts, mlps, strict=True)
        ]
        demand = pro.demand_s + epi.demand_s + sum(blk.demand_s for blk in layers)
        launch = self.launch(step.phase)
        if launch.additive:
            time_s = launch.fixed_s + demand - launch.gap_s
        else:  # asynchronous eager issue: the closed form over every kernel's body, in order
            order = [pro.bodies, *(b for a, m in zip(atts, mlps, strict=True) for b in (a.bodies, m.bodies))]
            bodies = np.concatenate([np.asarray(x, dtype=np.float64) for x in (*order, epi.bodies)])
            time_s = float(eager_step_time(bodies, launch.fixed_s, launch.issue_s, launch.gap_s))
        b, f, t, bounds = block_arrays(layers, time_s / demand if demand > 0 else 0.0)
        total_bytes = pro.bytes + epi.bytes + sum(blk.bytes for blk in layers)
        total_flops = pro.flops + epi.flops + sum(blk.flops for blk in layers)
        link = pro.link_bytes + epi.link_bytes + sum(blk.link_bytes for blk in layers)
        return StepCost(time_s, total_bytes, total_flops, link, b, f, t, bounds)

    def exact(self, step: ReplayStep) -> StepCost:
        """One step costed at its own contexts (no interpolation), memoised."""
        key = ("exact", step)
        if key not in self._memo:
            self._memo[key] = (
                self.decomposed(step, step.contexts)
                if self.blockwise
                else self.simulate(step, step.contexts)[0]
            )
            self.simulated_steps += self.blockwise
        return self._memo[key]

    def layer_groups(self, step: ReplayStep) -> list[tuple[list[Kernel], int]]:
        """The step's kernels in order as (kernels, repeats): the prologue, runs of identical
        consecutive decoder layers, the epilogue (what a fit needs to evaluate a step fast)."""
        spec, prec = self.spec, self.config.precision
        run = self.config.execution(self.device, step.observe, step.policy)
        shape = self._shape(step, step.contexts)
        heads = step.heads or (None,) * spec.num_layers
        groups: list[tuple[list[Kernel], int]] = [(step_prologue(spec, shape, prec, run), 1)]
        last: tuple[Any, ...] | None = None
        for layer, (kept, h) in enumerate(zip(step.kept, heads, strict=True)):
            key = (min(layer, 1), kept, h)
            if key == last:
                kernels, count = groups[-1]
                groups[-1] = (kernels, count + 1)
                continue
            kernels = attention_block(spec, shape, min(layer, 1), prec, None, run, h)
            groups.append((kernels + mlp_block(spec, shape, 0, kept, prec, None, run), 1))
            last = key
        groups.append((step_epilogue(spec, shape, prec, run), 1))
        return groups

    def _at(self, step: ReplayStep, total_context: int) -> StepCost:
        key = (
            step.phase,
            len(step.contexts),
            step.new_tokens,
            step.news,
            step.kept,
            step.observe,
            step.heads,
            step.policy,
            total_context,
        )
        cached = self._memo.get(key)
        if cached is None:
            contexts = _spread(total_context, len(step.contexts))
            if self.blockwise:
                cached = self.decomposed(step, contexts)
                self.simulated_steps += 1
            else:
                cached = self.simulate(step, contexts)[0]
            self._memo[key] = cached
        return cached

    def _cell(self, step: ReplayStep, total: int) -> tuple[int, int]:
        """The grid cell [x0, x1) of the summed context `total`."""
        batch = len(step.contexts)
        grid = self.config.context_grid * batch
        x0 = max(batch * step.new_tokens, (total // grid) * grid)
        return x0, x0 + grid

    def cost(self, step: ReplayStep) -> StepCost:
        """One step (count 1). Prefills are costed as they are (their tokens and contexts
        vary together, so interpolating in the context would not be exact)."""
        if not self.config.memoize:
            return self.simulate(step, step.contexts)[0]
        if step.phase == "prefill":
            key = ("prefill", step)
            if key not in self._memo:
                exact = self.blockwise
                self._memo[key] = (
                    self.decomposed(step, step.contexts) if exact else self.simulate(step, step.contexts)[0]
                )
                self.simulated_steps += exact
            return self._memo[key]
        total = sum(step.contexts)
        x0, x1 = self._cell(step, total)
        if x0 == total:
            return self._at(step, total)
        a, b = self._at(step, x0), self._at(step, x1)
        num, den = total - x0, x1 - x0
        ints = [affine_int(a.bytes, b.bytes, num, den), affine_int(a.flops, b.flops, num, den)]
        ints.append(affine_int(a.link_bytes, b.link_bytes, num, den))
        lb = affine_array(a.layer_bytes, b.layer_bytes, num, den)
        lf = affine_array(a.layer_flops, b.layer_flops, num, den)
        if any(v is None for v in ints) or lb is None or lf is None:
            # Not affine (sub-byte formats round per tensor): cost this step exactly.
            return self.simulate(step, step.contexts)[0]
        w = num / den
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

    # -- a run of decode steps --------------------------------------------------------------

    def cost_run(self, step: ReplayStep) -> tuple[np.ndarray, StepCost]:
        """Every step time of the run, and the run's summed cost (layer arrays summed, the
        bounds of its first step)."""
        if step.count == 1 or not self.config.memoize:
            costs = [self.cost(step.at(j)) for j in range(step.count)]
            return np.array([c.time_s for c in costs]), summed(costs)
        batch = len(step.contexts)
        totals = sum(step.contexts) + batch * np.arange(step.count, dtype=np.int64)
        times = np.empty(step.count, dtype=np.float64)
        parts: list[StepCost] = []
        j = 0
        while j < step.count:
            x0, x1 = self._cell(step, int(totals[j]))
            end = j + int(np.searchsorted(totals[j:], x1, side="left"))
            seg = totals[j:end] - x0
            a, b = self._at(step, x0), self._at(step, x1)
            cell_cost = closed_form(a, b, seg, x1 - x0)
            if cell_cost is None:  # not exactly affine: step by step
                costs = [self.cost(step.at(i)) for i in range(j, end)]
                times[j:end] = [c.time_s for c in costs]
                parts.append(summed(costs))
            else:
                times[j:end] = a.time_s + (b.time_s - a.time_s) * seg / (x1 - x0)
                parts.append(cell_cost)
            j = end
        total = summed(parts)
        total.layer_bound = self.cost(step.at(0)).layer_bound
        return times, total

    def retrigger_cost(
        self, kept: tuple[int, ...], policy: PolicyCosts = NO_POLICY_COSTS
    ) -> tuple[float, int, int, int]:
        """(time_s, DRAM bytes, host bytes, FLOPs) of installing a mask with these kept counts."""
        key = ("retrigger", kept, policy)
        if key not in self._memo:
            kernels = retrigger_kernels(
                self.spec,
                list(kept),
                self.config.precision,
                self.execution,
                policy.build_topk,
                policy.classifier_classes,
            )
            result = simulate_step(kernels, self.device, prefetch=False, phase=MASK_BUILD_PHASE)
            self._memo[key] = (result.time_s, result.dram_bytes, result.host_bytes, result.flops)
        return self._memo[key]


def _spread(total: int, batch: int) -> tuple[int, ...]:
    """`batch` contexts summing to `total`, as equal as possible (largest first)."""
    q, extra = divmod(total, batch)
    return tuple(q + 1 if i < extra else q for i in range(batch))
