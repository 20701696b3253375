"""Rendering predicted-against-measured tables (`dartsim validate`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from dartsim.report import render
from dartsim.units import MS_PER_S


def error_summary(errors: Sequence[float]) -> dict[str, float]:
    """Median and max of |error| (fractions)."""
    magnitudes = [abs(e) for e in errors]
    return {
        "median_abs_error": statistics.median(magnitudes) if magnitudes else 0.0,
        "max_abs_error": max(magnitudes) if magnitudes else 0.0,
    }


def worst_line(rows: Sequence[dict[str, Any]], label: str = "worst |error|") -> str:
    """The closing line: the worst |error| and the case it belongs to."""
    if not rows:
        return f"{label}: no cases\n"
    worst = max(rows, key=lambda r: abs(r["error"]))
    return f"{label}: {abs(worst['error']):.1%} ({worst['case']})\n"


def host_rows(results: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "case": r.name,
            "group": r.group,
            "measured_ms": r.measured.median_s * MS_PER_S,
            "min_ms": r.measured.min_s * MS_PER_S,
            "max_ms": r.measured.max_s * MS_PER_S,
            "spread": r.measured.spread,
            "repeats": r.measured.repeats,
            "predicted_ms": r.predicted_s * MS_PER_S,
            "error": r.error,
        }
        for r in results
    ]


def render_host(rows: Sequence[dict[str, Any]], hw_label: str, preamble: str, fmt: str) -> str:
    """The host validation table, ending with the worst |error| line."""
    if fmt == "json":
        return render.json_text(
            {"hw": hw_label, "cases": list(rows), **error_summary([r["error"] for r in rows])}
        )
    header = [
        "case",
        "measured (ms, median)",
        "spread (min-max, ms)",
        "predicted (ms)",
        "error",
    ]
    table = [
        [
            r["case"],
            f"{r['measured_ms']:.2f}",
            f"{r['min_ms']:.2f}-{r['max_ms']:.2f}",
            f"{r['predicted_ms']:.2f}",
            f"{r['error']:+.1%}",
        ]
        for r in rows
    ]
    if fmt == "csv":
        return render.csv_text(list(rows[0]) if rows else [], [list(r.values()) for r in rows])
    summary = error_summary([r["error"] for r in rows])
    return (
        f"# Predicted vs measured on this host ({hw_label})\n\n{preamble}\n\n"
        + render.markdown_table(header, table)
        + f"\nmedian |error| {summary['median_abs_error']:.1%} over {len(rows)} cases. "
        + "Error = (predicted - measured) / measured.\n\n"
        + worst_line(rows)
    )


def _fmt_value(metric: str, value: float) -> str:
    return f"{value:.2f} tok/s" if metric == "output_tokens_per_s" else f"{value * MS_PER_S:.2f} ms"


def _group_lines(rows: Sequence[dict[str, Any]], key: str) -> list[list[str]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    out = []
    for name in sorted(groups):
        s = error_summary([r["error"] for r in groups[name]])
        out.append(
            [name, str(len(groups[name])), f"{s['median_abs_error']:.1%}", f"{s['max_abs_error']:.1%}"]
        )
    return out


def render_published(
    rows: Sequence[dict[str, Any]], about: str, split_rule: str, sources: dict[str, Any], fmt: str
) -> str:
    """Published GPU measurements against predictions: the calibration and held-out parts
    separately, each with its median and max |error|, then every row."""
    parts = {part: [r for r in rows if r["split"] == part] for part in ("calibration", "held-out")}
    if fmt == "json":
        return render.json_text(
            {
                "split_rule": split_rule,
                "parts": {
                    p: error_summary([r["error"] for r in rs]) | {"cases": len(rs)} for p, rs in parts.items()
                },
                "rows": list(rows),
            }
        )
    fields = list(rows[0]) if rows else []
    if fmt == "csv":
        return render.csv_text(fields, [[r[f] for f in fields] for r in rows])
    lines = [
        "# Predicted vs published GPU measurements",
        "",
        f"{len(rows)} published measurements from {len({r['source'] for r in rows})} sources "
        f"({len({sources[s]['publisher'] for s in {r['source'] for r in rows}})} publishers) on "
        f"{len({r['device'] for r in rows})} devices. {about}",
        "",
        f"Split: {split_rule}",
        "",
    ]
    for part, part_rows in parts.items():
        s = error_summary([r["error"] for r in part_rows])
        lines.append(
            f"**{part}**: median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
            f"over {len(part_rows)} rows"
        )
        lines.append("")
    header = ["group", "rows", "median |error|", "max |error|"]
    for part, part_rows in parts.items():
        for key in ("source", "device", "metric"):
            lines.append(f"### {part} by {key}\n")
            lines.append(render.markdown_table([key, *header[1:]], _group_lines(part_rows, key)))
    lines.append("### Sources\n")
    src_rows = [
        [name, s["publisher"], s["title"], s["version"], s["url"]]
        for name, s in sorted(sources.items())
        if any(r["source"] == name for r in rows)
    ]
    lines.append(render.markdown_table(["source", "publisher", "title", "version", "address"], src_rows))
    lines.append("### Every row\n")
    table = [
        [
            r["id"],
            r["split"],
            r["device"],
            r["model"],
            r["precision"],
            str(r["tp"]),
            str(r["batch"]),
            f"{r['input_tokens']}/{r['output_tokens']}",
            r["metric"],
            _fmt_value(r["metric"], r["measured"]),
            _fmt_value(r["metric"], r["predicted"]),
            f"{r['error']:+.1%}",
        ]
        for r in rows
    ]
    head = ["id", "part", "device", "model", "weights", "TP", "batch", "in/out", "metric", "measured",
            "predicted", "error"]  # fmt: skip
    lines.append(render.markdown_table(head, table))
    for part, part_rows in parts.items():
        s = error_summary([r["error"] for r in part_rows])
        lines.append(
            f"{part}: median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
            f"({len(part_rows)} rows)"
        )
    return "\n".join(lines) + "\n"
