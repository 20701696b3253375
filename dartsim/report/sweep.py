"""Rendering a sweep's rows (study/sweep.py) as markdown, CSV or JSON."""

from __future__ import annotations

from typing import Any

from dartsim.report import render
from dartsim.study.sweep import FIELDS
from dartsim.units import GB, MS_PER_S


def render_sweep(rows: list[dict[str, Any]], fmt: str, title: str) -> str:
    if fmt == "json":
        return render.json_text(rows)
    if fmt == "csv":
        return render.csv_text(FIELDS, [[row[f] for f in FIELDS] for row in rows])
    header = [
        "hardware",
        "stack",
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
            row["stack"],
            str(row["tp"]),
            row["mask_apply"],
            f"{row['time_s']:.3f}",
            f"{row['dense_time_s']:.3f}",
            f"{row['speedup']:.3f}",
            f"{row['ttft_s'] * MS_PER_S:.2f}",
            f"{row['tpot_s'] * MS_PER_S:.3f}",
            f"{row['tpot_p99_s'] * MS_PER_S:.3f}",
            f"{row['tokens_per_s']:.2f}",
            f"{row['bytes'] / GB:.2f}",
            f"{row['mask_build_s'] * MS_PER_S:.3f}",
        ]
        for row in rows
    ]
    return f"# {title}\n\n" + render.markdown_table(header, table)
