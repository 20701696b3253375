"""The report folder's replays: the same batch of traces as each of several models on one
device, each as recorded and dense, with the roofline points of one masked decode step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dartsim.engine.costing import StepCoster
from dartsim.engine.replay_config import ReplayStep
from dartsim.replay.job import ReplayJob, prepare, run_prepared
from dartsim.replay.result import ReplayResult
from dartsim.replay.run import densified
from dartsim.replay.steps import step_at, step_count
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.specs.stack import StackSpec
from dartsim.trace.types import Trace
from dartsim.workload import Precision


@dataclass(frozen=True)
class ModelRun:
    """The traces replayed as one model: as recorded and the dense baseline."""

    spec: ModelSpec
    result: ReplayResult
    roofline: dict[str, list[tuple[float, float]]]
    """Per run label (dense, DART): (FLOP/byte, achieved FLOP/s) of every kernel of one
    masked decode step."""

    @property
    def tp(self) -> int:
        return self.result.setup.tp


def _masked_decode_index(steps: Sequence[ReplayStep], width: int) -> int | None:
    """A decode step under a mask, from the middle of the run on when there is one."""
    index, found = 0, None
    for step in steps:
        if step.phase == "decode" and any(k < width for k in step.kept):
            found = index + step.count // 2
            if index + step.count > step_count(steps) // 2:
                return found
        index += step.count
    return found


def kernel_points(coster: StepCoster, step: ReplayStep) -> list[tuple[float, float]]:
    """(FLOP/byte, achieved FLOP/s) of every kernel with work and traffic; achieved uses the
    kernel's standalone time (launch plus its slowest resource)."""
    _, result = coster.simulate(step, step.contexts)
    return [
        (t.kernel.flops / t.kernel.bytes, t.kernel.flops / t.demand_s)
        for t in result.timings
        if t.kernel.flops > 0 and t.kernel.bytes > 0 and t.demand_s > 0
    ]


def replay_model(
    traces: Sequence[Trace],
    spec: ModelSpec,
    hw: HardwareSpec,
    tp: str,
    precision: Precision,
    stack: StackSpec | None = None,
) -> ModelRun:
    job = ReplayJob(tuple(traces), spec, hw, tp=tp, precision=precision, compare_dense=True, stack=stack)
    prepared = prepare(job)
    result = run_prepared(prepared)
    steps = prepared.steps
    coster = StepCoster(spec, hw, prepared.config)
    points: dict[str, list[tuple[float, float]]] = {}
    masked = _masked_decode_index(steps, spec.intermediate_size)
    if masked is not None:
        points["dense"] = kernel_points(coster, step_at(densified(steps, spec.intermediate_size), masked))
        points["DART"] = kernel_points(coster, step_at(steps, masked))
    return ModelRun(spec, result, points)
