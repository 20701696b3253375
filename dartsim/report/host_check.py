"""Predicted against measured: replay traces recorded on this host with a hardware preset
calibrated on it (dartsim calibrate --device cpu), and compare step times.

Traces recorded with `--mask-apply zero` did the full dense FFN arithmetic (masking only
zeroes u), so they are replayed dense; `compact` traces are replayed with their masks.
Everything is fp32, as the recording ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dartsim.engine.costing import ReplayConfig
from dartsim.engine.run import densified, run_steps
from dartsim.engine.steps import build_steps
from dartsim.report import render
from dartsim.specs.dtypes import FP32
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.workload import Precision

RECORDED_PRECISION = Precision(weight=FP32, activation=FP32, kv_cache=FP32)
NOISY_SPREAD = 0.5
"""Decode-step spread ((p90 - p10) / median of the measured steps) above which a trace's
timings are flagged as noisy: on an idle host the steps of one run differ by a few tens of
percent at most (context growth and re-trigger epochs), so more means other load."""
NOISY_RATIO = (0.5, 2.0)
"""Measured / predicted outside this range is flagged as well."""


def compare(
    path: Path, trace: dict[str, Any], spec: ModelSpec, hw: HardwareSpec, prefetch: bool
) -> dict[str, Any]:
    mode = trace.get("dart", {}).get("mask_apply", "zero")  # policy runs mask by zeroing
    steps = build_steps([trace], spec, False)
    if mode == "zero":
        steps = densified(steps, spec.intermediate_size)
    config = ReplayConfig(prefetch=prefetch, mask_apply="compact", precision=RECORDED_PRECISION)
    predicted = run_steps(steps, spec, hw, config)["step_times_s"]
    measured = trace["steps"]["time_s"].numpy()
    decode = trace["steps"]["phase"].numpy() == 1
    m_dec, p_dec = float(np.mean(measured[decode])), float(np.mean(predicted[decode]))
    p10, p50, p90 = (float(v) for v in np.percentile(measured[decode], [10, 50, 90]))
    return {
        "trace": path.name,
        "mask_apply": mode,
        "measured_prefill_ms": float(measured[0]) * 1e3,
        "predicted_prefill_ms": float(predicted[0]) * 1e3,
        "measured_decode_ms": m_dec * 1e3,
        "predicted_decode_ms": p_dec * 1e3,
        "decode_ratio": m_dec / p_dec,
        "decode_spread": (p90 - p10) / p50,
    }


def noisy(row: dict[str, Any]) -> bool:
    """Whether a row's measurement looks disturbed (see NOISY_SPREAD and NOISY_RATIO)."""
    low, high = NOISY_RATIO
    return row["decode_spread"] > NOISY_SPREAD or not low <= row["decode_ratio"] <= high


def render_rows(rows: Sequence[dict[str, Any]], hw: HardwareSpec, fmt: str) -> str:
    if fmt == "json":
        return render.json_text(list(rows))
    fields = list(rows[0]) if rows else []
    table = [[r[f] if isinstance(r[f], str) else f"{r[f]:.2f}" for f in fields] for r in rows]
    if fmt == "csv":
        return render.csv_text(fields, table)
    header = [
        "trace",
        "mask apply",
        "prefill measured (ms)",
        "prefill predicted (ms)",
        "decode step measured (ms, mean)",
        "decode step predicted (ms, mean)",
        "measured / predicted",
        "decode spread (p90-p10)/p50",
    ]
    flagged = [r["trace"] for r in rows if noisy(r)]
    note = (
        f"\nNoisy measurements (decode spread above {NOISY_SPREAD} or ratio outside "
        f"{NOISY_RATIO[0]}-{NOISY_RATIO[1]}): {', '.join(flagged)}. The host was probably busy "
        "while recording; record again on an idle machine before trusting these rows.\n"
        if flagged
        else ""
    )
    return (
        f"# Predicted vs measured step times on {hw.name}\n\n"
        f"Hardware file: `{Path(hw.source_file).name}` (calibrated by dartsim calibrate --device cpu).\n"
        "Measured: the step times recorded in each trace. Predicted: dartsim replay of the same\n"
        "steps at fp32, as recorded (zero-masked traces replayed dense).\n\n"
        + render.markdown_table(header, table)
        + note
    )
