"""Architecture studies: one workload replayed over a grid of hardware, software stacks,
tensor-parallel degrees and mask-application modes, each point beside its own dense
baseline."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from typing import Any

from dartsim.errors import UserError
from dartsim.replay.job import ReplayJob, prepare, run_prepared
from dartsim.replay.steps import check_retarget
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import ModelSpec
from dartsim.specs.stack import default_stack, stack_for
from dartsim.trace.types import Trace
from dartsim.workload import Precision

FIELDS = (
    "hw",
    "stack",
    "tp",
    "mask_apply",
    "time_s",
    "dense_time_s",
    "speedup",
    "ttft_s",
    "tpot_s",
    "tpot_p99_s",
    "tokens_per_s",
    "bytes",
    "dense_bytes",
    "mask_build_s",
)


def sweep(
    traces: Sequence[Trace],
    spec: ModelSpec,
    hw_names: Sequence[str],
    tps: Sequence[str],
    mask_modes: Sequence[str],
    precision: Precision,
    prefetch: bool | None = None,
    progress: bool = False,
    launch: str | None = None,
    allreduce: str | None = None,
    stacks: Sequence[str | None] = (None,),
) -> list[dict[str, Any]]:
    """One row per (hardware, stack, TP degree, mask mode); a stack of None is each
    hardware's default. Points that cannot run (the shard does not fit, the device lacks
    the compute format) are skipped with a note on stderr; if no point can run, that is an
    error."""
    check_retarget(traces, spec)
    rows = []
    for hw_name, stack_name, tp_text, mode in itertools.product(hw_names, stacks, tps, mask_modes):
        hw = load_hardware_spec(hw_name)
        stack = default_stack(hw) if stack_name is None else stack_for(stack_name, hw)
        job = ReplayJob(
            tuple(traces),
            spec,
            hw,
            stack=stack,
            tp=tp_text,
            mask_apply=mode,
            precision=precision,
            prefetch=prefetch,
            launch=launch,
            allreduce=allreduce,
            compare_dense=True,
        )
        try:
            prepared = prepare(job)
        except UserError as exc:
            where = f"{hw.name} {stack.name} --tp {tp_text} {mode}"
            sys.stderr.write(f"skipped {where}: {str(exc).split(': ', 1)[-1]}\n")
            continue
        result = run_prepared(prepared)
        run, dense = result.run, result.dense
        assert dense is not None
        rows.append(
            {
                "hw": hw.name,
                "stack": stack.label,
                "tp": prepared.tp,
                "mask_apply": mode,
                "time_s": run.totals.time_s,
                "dense_time_s": dense.totals.time_s,
                "speedup": result.speedup,
                "ttft_s": run.ttft_s,
                "tpot_s": run.tpot_s,
                "tpot_p99_s": run.tpot_p99_s,
                "tokens_per_s": run.tokens_per_s,
                "bytes": run.totals.bytes,
                "dense_bytes": dense.totals.bytes,
                "mask_build_s": run.mask_build_time_s,
            }
        )
        if progress:
            sys.stderr.write(
                f"{hw.name} {stack.name} tp={prepared.tp} {mode}: speedup {rows[-1]['speedup']:.3f}x\n"
            )
    if not rows:
        raise UserError(
            f"no point of the sweep fits: {spec.name} fits none of the hardware at the given --tp"
        )
    return rows
