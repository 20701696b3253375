"""Rendering `dartsim validate --serving`: published serving figures beside `dartsim serve`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dartsim.report import render
from dartsim.report.validation import error_summary, summary_line

WORST_ROWS = 15
GROUP_KEYS = ("metric", "source", "preset", "stack", "load kind")
TABLE_HEAD = ["id", "part", "preset", "model", "TP", "precision", "in/out", "load", "metric", "measured",
              "predicted", "error"]  # fmt: skip


def _value(metric: str, value: float) -> str:
    return f"{value:.1f}" if metric.endswith("per_s") else f"{value * 1000:.2f} ms"


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        r["id"],
        r["part"],
        r["preset"],
        r["model_config"],
        str(r["tp"]),
        r["precision"],
        f"{r['input_tokens']}/{r['output_tokens']}",
        r["load"],
        r["metric"],
        _value(r["metric"], r["measured"]),
        _value(r["metric"], r["predicted"]),
        f"{r['error']:+.1%}",
    ]


def _by(rows: Sequence[dict[str, Any]], key: str) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    body = []
    for name, members in sorted(groups.items()):
        s = error_summary([r["error"] for r in members])
        body.append([name, str(len(members)), f"{s['median_abs_error']:.1%}", f"{s['max_abs_error']:.1%}"])
    return render.markdown_table([key, "rows", "median |error|", "max |error|"], body)


def load_kind(row: dict[str, Any]) -> str:
    """Open loop (a request rate) or everything at once / a closed loop (users)."""
    return "open loop (req/s)" if row["load"].endswith("Poisson") else "closed loop or all at once"


def render_serving(
    compared: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, Any]],
    about: str,
    split: dict[str, Any],
    doc: dict[str, Any],
    fmt: str,
) -> str:
    """Both parts' median and max |error|, held-out rows by metric, source, device, stack and
    load, the worst held-out rows, what each source was simulated with, and every row not
    simulated with its reason. CSV and JSON carry every row."""
    if fmt == "json":
        parts = {p: [r for r in compared if r["part"] == p] for p in ("calibration", "held-out")}
        return render.json_text(
            {
                "about": about,
                "split": split,
                "parts": {
                    p: error_summary([r["error"] for r in rs]) | {"rows": len(rs)} for p, rs in parts.items()
                },
                "rows": list(compared),
                "not_simulated": list(skipped),
            }
        )
    if fmt == "csv":
        fields = list(compared[0]) if compared else []
        return render.csv_text(fields, [[r[f] for f in fields] for r in compared])
    held = [{**r, "load kind": load_kind(r)} for r in compared if r["part"] == "held-out"]
    cal = [r for r in compared if r["part"] == "calibration"]
    lines = [
        "# Predicted vs published serving measurements",
        "",
        f"{len(compared) + len(skipped)} published serving figures; {len(compared)} simulated, "
        f"{len(skipped)} not (each with its reason below). {about}",
        "",
        f"Split ({split['decided']}): {split['rule']} Calibration sources: "
        f"{', '.join(split['calibration_sources'])}. Fit: {split['fit']}.",
        "",
        *[f"Revision: {text}\n" for text in doc.get("revisions", [])],
        "Regenerate with `dartsim validate --serving --out reports/validation-serving.md` (every row: "
        "`--format csv`). The measurements and their sources: dartsim/validate/published_serving/; how each "
        "row is simulated: dartsim/validate/published-serving.yaml.",
        "",
        "## Summary",
        "",
        summary_line("held out", held),
        "",
        summary_line(
            "held out, open loop (Poisson at a rate)", [r for r in held if r["load kind"].startswith("open")]
        ),
        "",
        summary_line(
            "held out, closed loop or all requests at once",
            [r for r in held if not r["load kind"].startswith("open")],
        ),
        "",
        summary_line("calibration (looked at while building the model; nothing fitted)", cal),
        "",
    ]
    for key in GROUP_KEYS:
        lines += [f"### Held-out rows by {key}\n", _by(held, key)]
    lines += ["### Calibration rows by metric\n", _by(cal, "metric")]
    lines.append(f"### The {WORST_ROWS} worst held-out rows\n")
    worst = sorted(held, key=lambda r: -abs(r["error"]))[:WORST_ROWS]
    lines.append(render.markdown_table(TABLE_HEAD, [_cells(r) for r in worst]))
    lines.append("### How each source is simulated\n")
    src_rows = [
        [name, s["stack"], s["stack_why"], ", ".join(f"{k} {v}" for k, v in s["scheduler"].items()),
         s["scheduler_why"]]
        for name, s in sorted(doc["sources"].items())
    ]  # fmt: skip
    lines.append(render.markdown_table(["source", "stack", "why", "scheduler", "why"], src_rows))
    lines.append("### Rows not simulated\n")
    reasons: dict[tuple[str, str], int] = {}
    for r in skipped:
        reasons[(r["source"], r["reason"])] = reasons.get((r["source"], r["reason"]), 0) + 1
    lines.append(
        render.markdown_table(
            ["source", "rows", "reason"], [[s, str(n), why] for (s, why), n in sorted(reasons.items())]
        )
    )
    lines.append("### Every simulated row\n")
    lines.append(render.markdown_table(TABLE_HEAD, [_cells(r) for r in compared]))
    s = error_summary([r["error"] for r in held])
    lines.append(
        f"held-out: median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
        f"({len(held)} rows)"
    )
    return "\n".join(lines) + "\n"
