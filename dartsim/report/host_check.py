"""`dartsim report host-check`: the predicted-against-measured step times of traces
recorded on this host (validate/recorded.py), as a table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dartsim.report import render
from dartsim.specs.hardware import HardwareSpec
from dartsim.validate.recorded import NOISY_RATIO, NOISY_SPREAD


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
