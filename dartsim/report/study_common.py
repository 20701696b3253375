"""What replay and serving study reports share: an axis value as printed, and the tidy
table of every point (its axes, its metrics, the reason it was skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dartsim.report import render


def axis_text(point: dict[str, Any], axis: str) -> str:
    """A point's value on `axis` as the reports print it (labels for devices and mask pools)."""
    value: Any = point.get(axis)
    if axis in ("hardware", "masks"):
        return str(value["label"])
    if axis == "stack":
        return "default" if value is None else value if isinstance(value, str) else Path(value["file"]).stem
    if axis == "precision":
        return f"{value['weight']}/{value['activation']}/{value['kv_cache']}"
    return "" if value is None else str(value)


def points_csv(results: Sequence[dict[str, Any]], axes: Sequence[str], metrics: Sequence[str]) -> str:
    """One row per point: its axes, then `metrics` (empty when skipped or unknown) and the reason."""
    rows = []
    for r in results:
        row = r.get("row", {})
        rows.append(
            [axis_text(r["point"], a) for a in axes]
            + [row.get(m, "") if row.get(m) is not None else "" for m in metrics]
            + [r.get("skipped", "")]
        )
    return render.csv_text([*axes, *metrics, "skipped"], rows)
