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


GROUPS = ("calibration", "held-out", "never-fitted", "flagged")
GROUP_MEANING = {
    "calibration": "rows the fits used",
    "held-out": "held-out rows of the sources the fits used",
    "never-fitted": "rows of sources no fit used (other publishers and software)",
    "flagged": "rows held out for a stated reason (see the split)",
}
WORST_ROWS = 30


def summary_line(label: str, rows: Sequence[dict[str, Any]]) -> str:
    """`**label**: median |error| m, max |error| x over n rows` (the validation reports' line)."""
    if not rows:
        return f"**{label}**: no rows"
    s = error_summary([r["error"] for r in rows])
    median, worst = s["median_abs_error"], s["max_abs_error"]
    return f"**{label}**: median |error| {median:.1%}, max |error| {worst:.1%} over {len(rows)} rows"


def render_published(
    rows: Sequence[dict[str, Any]], about: str, split: dict[str, Any], sources: dict[str, Any], fmt: str
) -> str:
    """Published GPU measurements against predictions: every group (calibration, held-out,
    never fitted, flagged) with its median and max |error|, the held-out rows by batch,
    metric, device and stack, the FP16/FP8 pairs, the worst held-out rows and the sources.
    CSV gives every row."""
    from dartsim.validate.published import batch_bucket, precision_pairs

    groups = {g: [r for r in rows if r["group"] == g] for g in GROUPS}
    unseen = [r for r in rows if r["split"] == "held-out"]
    pairs = precision_pairs(rows)
    if fmt == "json":
        return render.json_text(
            {
                "split": split,
                "groups": {
                    g: error_summary([r["error"] for r in rs]) | {"cases": len(rs)}
                    for g, rs in groups.items()
                },
                "pairs": pairs,
                "rows": list(rows),
            }
        )
    fields = list(rows[0]) if rows else []
    if fmt == "csv":
        return render.csv_text(fields, [[r[f] for f in fields] for r in rows])
    known = [r for r in unseen if r["group"] != "flagged"]
    lines = [
        "# Predicted vs published GPU measurements",
        "",
        f"{len(rows)} published measurements from {len({r['source'] for r in rows})} sources "
        f"({len({sources[s]['publisher'] for s in {r['source'] for r in rows}})} publishers) on "
        f"{len({r['device'] for r in rows})} devices, batch 1 to {max(r['batch'] for r in rows)}. {about}",
        "",
        f"Split: {split['rule']} Never fitted: {', '.join(split.get('never_fitted', []))}. "
        f"{split.get('never_fitted_why', '')}",
        "",
        f"Fit: {split.get('fit', '')} The fitted values and their sources are in the stack and hardware "
        "presets (`dartsim stack show NAME`, `dartsim hw show NAME`); reports/fit-gpu.md says what each fit "
        "gave.",
        "",
        "Error = (predicted - measured) / measured. Regenerate with "
        "`dartsim validate --published --out reports/validation-gpu.md` (every row: `--format csv`).",
        "",
        "## Summary",
        "",
        summary_line("every row not fitted (held out, never fitted, flagged)", unseen),
        "",
        summary_line("held out, without the flagged rows", known),
        "",
        summary_line("held out without the flagged rows, batch 1", [r for r in known if r["batch"] == 1]),
        "",
        summary_line("held out without the flagged rows, batch > 1", [r for r in known if r["batch"] > 1]),
        "",
    ]
    for g in GROUPS:
        lines += [summary_line(f"{g} ({GROUP_MEANING[g]})", groups[g]), ""]
    if pairs:
        s = error_summary([p["error"] for p in pairs])
        unseen_pairs = [p for p in pairs if p["split"] == "held-out"]
        t = error_summary([p["error"] for p in unseen_pairs])
        lines += [
            f"**FP16 / FP8 pairs** (the same case measured at both; ratio of the FP16 time to the FP8 time): "
            f"predicted ratio within {s['median_abs_error']:.1%} of the measured one at the median, "
            f"{s['max_abs_error']:.1%} at worst, over {len(pairs)} pairs ({len(unseen_pairs)} with the FP8 "
            "row "
            f"held out: median {t['median_abs_error']:.1%}, max {t['max_abs_error']:.1%}).",
            "",
        ]
    header = ["rows", "median |error|", "max |error|"]
    tagged = [{**r, "batch size": batch_bucket(r["batch"])} for r in unseen]
    for key in ("batch size", "metric", "device", "stack", "source", "group"):
        lines.append(f"### Rows not fitted, by {key}\n")
        lines.append(render.markdown_table([key, *header], _group_lines(tagged, key)))
    lines.append("### Calibration rows, by stack and device\n")
    pairs_cal = [{**r, "stack on device": f"{r['stack']} on {r['device']}"} for r in groups["calibration"]]
    lines.append(
        render.markdown_table(["stack on device", *header], _group_lines(pairs_cal, "stack on device"))
    )
    lines.append(f"### The {WORST_ROWS} worst rows not fitted\n")
    worst = sorted(unseen, key=lambda r: -abs(r["error"]))[:WORST_ROWS]
    lines.append(render.markdown_table(_ROW_HEAD, [_row_cells(r) for r in worst]))
    lines.append("### Sources\n")
    src_rows = [
        [name, s["publisher"], s["title"], s["version"], s["url"]]
        for name, s in sorted(sources.items())
        if any(r["source"] == name for r in rows)
    ]
    lines.append(render.markdown_table(["source", "publisher", "title", "version", "address"], src_rows))
    s = error_summary([r["error"] for r in known])
    lines.append(
        f"held-out (flagged rows aside): median |error| {s['median_abs_error']:.1%}, max |error| "
        f"{s['max_abs_error']:.1%} ({len(known)} rows)"
    )
    return "\n".join(lines) + "\n"


_ROW_HEAD = ["id", "group", "stack", "device", "model", "weights", "TP", "batch", "in/out", "metric",
             "measured", "predicted", "error"]  # fmt: skip


def _row_cells(r: dict[str, Any]) -> list[str]:
    return [
        r["id"], r["group"], r["stack"], r["device"], r["model"], r["precision"], str(r["tp"]),
        str(r["batch"]), f"{r['input_tokens']}/{r['output_tokens']}", r["metric"],
        _fmt_value(r["metric"], r["measured"]),
        _fmt_value(r["metric"], r["predicted"]), f"{r['error']:+.1%}",
    ]  # fmt: skip


def render_fit(result: Any) -> str:
    """What `dartsim validate --published --fit` gave: every (stack, device) fit with its
    values, whether it is shipped, and the pairs with too few rows."""
    head = ["stack", "device", "role", "rows", "rms log error (before -> after)", "fitted values", "outcome"]
    table = []
    for f in result.fits:
        values = ", ".join(f"{k} {v:g}" for k, v in f.fields.items())
        if f.ok:
            outcome = "shipped"
        else:
            outcome = "FAILED, at the edge of its range: " + ", ".join(f.at_edge) + " (not shipped)"
        if f.not_identifiable:
            outcome += "; not moved by these rows: " + ", ".join(f.not_identifiable)
        role = "reference (with the hardware fields)" if f.reference else "stack only"
        table.append(
            [
                f.stack,
                f.device,
                role,
                str(f.rows),
                f"{f.rms_before:.3f} -> {f.rms_after:.3f}",
                values,
                outcome,
            ]
        )
    lines = [
        "# The fit of calibrated hardware and stack fields to the published calibration rows",
        "",
        "Written by `dartsim validate --published --fit DIR` (DIR/fit.md). Search ranges: "
        "dartsim/validate/published_fit.py (RANGES, with their sources). A fit with a value at the edge of "
        "its range is not shipped: its stack keeps the preset values on that device, and a failed reference "
        "fit leaves the device's hardware fields as measured.",
        "",
        render.markdown_table(head, table),
    ]
    if result.skipped:
        lines.append("Too few calibration rows to fit (fewer than 12): " + ", ".join(
            f"{s} on {d} ({n})" for s, d, n in result.skipped) + ".")  # fmt: skip
    return "\n".join(lines) + "\n"
