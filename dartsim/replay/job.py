"""One replay, from what to run to what it gave: `ReplayJob` -> `run_job` -> `ReplayResult`.

Every command and study that replays goes through here (replay, simulate, sweep, studies,
the report folder, the policy comparison): the retarget check, the tensor-parallel
choice, the steps from the traces, the run as recorded and its dense twin. What differs
between them is only how they build jobs and render results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dartsim.engine.replay_config import ReplayConfig, ReplayStep
from dartsim.errors import UserError
from dartsim.names import MASK_APPLY_MODES
from dartsim.replay.capacity import choose_tp
from dartsim.replay.result import ReplayResult, Setup
from dartsim.replay.run import densified, run_steps
from dartsim.replay.steps import build_steps, check_retarget
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec, load_model_spec, preset_names
from dartsim.specs.stack import StackSpec, default_stack
from dartsim.trace.types import Trace
from dartsim.workload import Precision


@dataclass(frozen=True)
class ReplayJob:
    """What to replay and how: a batch of traces (recorded or synthetic) as `model` on
    `hardware` under the software `stack` (None: the hardware's default stack). `tp` is a
    degree or "auto" (the smallest that fits); `prefetch`, `launch` and `allreduce` left
    as None take the hardware's and the stack's choices."""

    traces: tuple[Trace, ...]
    model: ModelSpec
    hardware: HardwareSpec
    tp: int | str = 1
    mask_apply: str = "compact"
    precision: Precision = field(default_factory=Precision)
    prefetch: bool | None = None
    launch: str | None = None
    allreduce: str | None = None
    memoize: bool = True
    compare_dense: bool = False
    progress: bool = False
    stack: StackSpec | None = None

    def software(self) -> StackSpec:
        """The stack this job runs (fitted values for its device applied)."""
        return self.stack if self.stack is not None else default_stack(self.hardware)

    def __post_init__(self) -> None:
        if not self.traces:
            raise UserError("a replay needs at least one trace")
        if self.mask_apply not in MASK_APPLY_MODES:
            raise UserError(
                f"mask apply must be one of {', '.join(MASK_APPLY_MODES)}, got {self.mask_apply!r}"
            )

    @property
    def kv_positions(self) -> int:
        """KV-cache positions the batch holds at its longest, summed over its sequences."""
        return sum(t.longest_context for t in self.traces)


@dataclass(frozen=True)
class PreparedJob:
    """A job with its degree chosen and its steps built (what a replay costs)."""

    job: ReplayJob
    tp: int
    retargeted_from: str | None
    steps: list[ReplayStep]
    config: ReplayConfig

    def setup(self) -> Setup:
        job, hw = self.job, self.job.hardware
        dev = self.config.device(hw)
        p = job.precision
        return Setup(
            model=job.model.name,
            hw=hw.name,
            tp=self.tp,
            batch=len(job.traces),
            mask_apply=job.mask_apply,
            prefetch=dev.prefetch,
            launch=dev.launch_mode,
            stack=dev.stack.label,
            allreduce=self.config.execution(dev).allreduce if self.tp > 1 else None,
            memoized=job.memoize,
            precision={"weight": p.weight.name, "activation": p.activation.name, "kv_cache": p.kv_cache.name},
            retargeted_from=self.retargeted_from,
        )


def check_formats(hw: HardwareSpec, precision: Precision, stack: StackSpec) -> None:
    """The device must run the job's compute formats (a user error otherwise)."""
    hw.tensor_flops_per_s(precision.gemm_compute)
    hw.tensor_flops_per_s(precision.attention_compute(stack.attention.fp8_compute))


def prepare(job: ReplayJob) -> PreparedJob:
    """Check the job, choose its tensor-parallel degree and build its steps. Errors that
    mean the point cannot run (the device lacks a format, no degree fits) are user errors."""
    stack = job.software()
    check_formats(job.hardware, job.precision, stack)
    retarget, source = check_retarget(job.traces, job.model)
    reserve = stack.memory.reserve_fraction
    tp = choose_tp(job.model, job.hardware, job.precision, str(job.tp), job.kv_positions, reserve)
    pre = stack.prefill
    steps = build_steps(job.traces, job.model, retarget, tp, pre.scheduling, pre.chunk_tokens)
    config = ReplayConfig(
        stack=stack,
        tp=tp,
        prefetch=job.prefetch,
        mask_apply=job.mask_apply,
        memoize=job.memoize,
        precision=job.precision,
        launch=job.launch,
        allreduce=job.allreduce,
    )
    return PreparedJob(job, tp, source if retarget else None, steps, config)


def run_prepared(prepared: PreparedJob) -> ReplayResult:
    job = prepared.job
    spec, hw, config = job.model, job.hardware, prepared.config
    run = run_steps(prepared.steps, spec, hw, config, progress=job.progress)
    dense = None
    if job.compare_dense:
        dense = run_steps(densified(prepared.steps, spec.intermediate_size), spec, hw, config, job.progress)
    return ReplayResult(prepared.setup(), run, dense)


def run_job(job: ReplayJob) -> ReplayResult:
    """The job's replay: as recorded and, with `compare_dense`, its dense twin."""
    return run_prepared(prepare(job))


def own_model(trace: Trace) -> ModelSpec:
    """The trace's own model: its preset when one matches, else the dimensions it records."""
    recorded = trace.model.spec()
    for candidate in (recorded.name, recorded.name.removesuffix("-instruct")):
        if candidate in preset_names():
            spec = load_model_spec(candidate)
            same = (spec.num_layers, spec.hidden_size, spec.intermediate_size)
            if same == (recorded.num_layers, recorded.hidden_size, recorded.intermediate_size):
                return spec
    return recorded


def target_model(traces: Sequence[Trace], model: str | None) -> ModelSpec:
    """`model` (a preset or config.json) when given, else the traces' own model."""
    return load_model_spec(model) if model else own_model(traces[0])
