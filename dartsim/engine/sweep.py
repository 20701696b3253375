"""Architecture studies: one workload replayed over a grid of hardware, tensor-parallel
degrees and mask-application modes, each point beside its own dense baseline."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from typing import Any

from dartsim.engine.costing import ReplayConfig
from dartsim.engine.run import choose_tp, run_with_dense
from dartsim.engine.steps import build_steps, check_retarget
from dartsim.errors import UserError
from dartsim.report import render
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import ModelSpec
from dartsim.workload import Precision

FIELDS = (
    "hw",
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
    traces: Sequence[dict[str, Any]],
    spec: ModelSpec,
    hw_names: Sequence[str],
    tps: Sequence[str],
    mask_modes: Sequence[str],
    precision: Precision,
    prefetch: bool | None = None,
    progress: bool = False,
    launch: str | None = None,
    allreduce: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (hardware, TP degree, mask mode). Points that cannot run (the shard does
    not fit, the device lacks the compute format) are skipped with a note on stderr; if no
    point can run, that is an error."""
    retarget, _ = check_retarget(traces, spec)
    kv_positions = sum(int(t["steps"]["context_len"].max()) for t in traces)
    rows = []
    for hw_name, tp_text, mode in itertools.product(hw_names, tps, mask_modes):
        hw = load_hardware_spec(hw_name)
        try:
            hw.tensor_flops_per_s(precision.gemm_compute)
            hw.tensor_flops_per_s(precision.attention_compute)
            tp = choose_tp(spec, hw, precision, tp_text, kv_positions)
        except UserError as exc:
            sys.stderr.write(f"skipped {hw.name} --tp {tp_text} {mode}: {str(exc).split(': ', 1)[-1]}\n")
            continue
        config = ReplayConfig(
            tp=tp, prefetch=prefetch, mask_apply=mode, precision=precision, launch=launch, allreduce=allreduce
        )
        steps = build_steps(traces, spec, retarget, tp)
        sparse, dense = run_with_dense(steps, spec, hw, config)
        rows.append(
            {
                "hw": hw.name,
                "tp": tp,
                "mask_apply": mode,
                "time_s": sparse["totals"]["time_s"],
                "dense_time_s": dense["totals"]["time_s"],
                "speedup": dense["totals"]["time_s"] / sparse["totals"]["time_s"],
                "ttft_s": sparse["ttft_s"],
                "tpot_s": sparse["tpot_s"],
                "tpot_p99_s": sparse["tpot_p99_s"],
                "tokens_per_s": sparse["tokens_per_s"],
                "bytes": sparse["totals"]["bytes"],
                "dense_bytes": dense["totals"]["bytes"],
                "mask_build_s": sum(r["time_s"] for r in sparse["retriggers"]),
            }
        )
        if progress:
            sys.stderr.write(f"{hw.name} tp={tp} {mode}: speedup {rows[-1]['speedup']:.3f}x\n")
    if not rows:
        raise UserError(
            f"no point of the sweep fits: {spec.name} fits none of the hardware at the given --tp"
        )
    return rows


def render_sweep(rows: list[dict[str, Any]], fmt: str, title: str) -> str:
    if fmt == "json":
        return render.json_text(rows)
    if fmt == "csv":
        return render.csv_text(FIELDS, [[row[f] for f in FIELDS] for row in rows])
    header = [
        "hardware",
        "TP",
        "masks",
        "time (s)",
        "dense (s)",
        "speedup",
        "TTFT (ms)",
        "TPOT (ms)",
        "TPOT p99 (ms)",
        "tokens/s",
        "DRAM GB/device",
        "mask builds (ms)",
    ]
    table = [
        [
            row["hw"],
            str(row["tp"]),
            row["mask_apply"],
            f"{row['time_s']:.3f}",
            f"{row['dense_time_s']:.3f}",
            f"{row['speedup']:.3f}",
            f"{row['ttft_s'] * 1e3:.2f}",
            f"{row['tpot_s'] * 1e3:.3f}",
            f"{row['tpot_p99_s'] * 1e3:.3f}",
            f"{row['tokens_per_s']:.2f}",
            f"{row['bytes'] / 1e9:.2f}",
            f"{row['mask_build_s'] * 1e3:.3f}",
        ]
        for row in rows
    ]
    return f"# {title}\n\n" + render.markdown_table(header, table)
