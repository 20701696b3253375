"""Rendering `dartsim validate --energy`: measured joules and watts beside dartsim's."""

from __future__ import annotations

from typing import Any

from dartsim.report import render
from dartsim.report.validation import error_summary, summary_line

HEAD = ["part", "model", "devices", "max_num_seqs", "output tokens", "metric", "measured", "predicted",
        "error", "predicted TPOT", "predicted mean batch"]  # fmt: skip


def _value(metric: str, v: float) -> str:
    return f"{v:.4f} J" if metric.startswith("joules") else f"{v:.0f} W"


def render_energy(result: dict[str, Any], doc: dict[str, Any], fmt: str) -> str:
    """Both parts by metric, the fit's outcome and every row; CSV and JSON carry every row."""
    rows = result["rows"]
    if fmt == "json":
        parts = {p: [r for r in rows if r["part"] == p] for p in ("calibration", "held-out")}
        return render.json_text(
            {
                "about": doc["about"],
                "split": doc["split"],
                "fit": result["fit"],
                "parts": {
                    p: error_summary([r["error"] for r in rs]) | {"rows": len(rs)} for p, rs in parts.items()
                },
                "rows": rows,
                "not_simulated": result["not_simulated"],
            }
        )
    if fmt == "csv":
        fields = list(rows[0]) if rows else []
        return render.csv_text(fields, [[r[f] for f in fields] for r in rows])
    held = [r for r in rows if r["part"] == "held-out"]
    cal = [r for r in rows if r["part"] == "calibration"]
    fit = result["fit"]
    if fit is None:
        fit_line = "Fit: not asked for (`--fit-static` fits it); the presets' nominal constants throughout."
    else:
        state = (
            "applied to every row below"
            if fit["applied"]
            else "outside that band: the fit FAILED and is not applied"
        )
        fit_line = (
            f"Fit: {fit['field']} on {fit['device']} from {fit['before_w']:g} W to {fit['fitted_w']:.1f} W, "
            f"against the band of {fit['band_w'][0]:g}-{fit['band_w'][1]:g} W its sources give: {state}."
        )
    lines = [
        "# Predicted vs measured energy",
        "",
        f"{len(rows)} measured figures simulated ({result['not_simulated']} rows of the collection not "
        "covered by the mapping: other devices without an energy section, other sources, missing configs). "
        f"{doc['about']}",
        "",
        f"Split ({doc['split']['decided']}): {doc['split']['rule']} Fit rule: {doc['split']['fit']}",
        "",
        fit_line,
        "",
        f"Assumptions: {doc['prompt_tokens']} prompt tokens per request ({doc['prompt_tokens_why']}); "
        f"{doc['requests_per_user']} requests per user ({doc['requests_per_user_why']}).",
        "",
        "Regenerate with `dartsim validate --energy --fit-static --out reports/validation-energy.md`. The "
        "rows and their sources: dartsim/validate/published_energy/; the mapping: "
        "dartsim/validate/published-energy.yaml.",
        "",
        "## Summary",
        "",
        summary_line("held out", held),
        "",
        *[
            summary_line(f"held out, {m}", [r for r in held if r["metric"] == m]) + "\n"
            for m in sorted({r["metric"] for r in held})
        ],
        summary_line("calibration", cal),
        "",
        *[
            summary_line(f"calibration, {m}", [r for r in cal if r["metric"] == m]) + "\n"
            for m in sorted({r["metric"] for r in cal})
        ],
        "## What the model misses",
        "",
        str(doc.get("misses", "")),
        "",
        "## Every row",
        "",
        render.markdown_table(
            HEAD,
            [
                [
                    r["part"],
                    r["model"],
                    str(r["devices"]),
                    str(r["max_num_seqs"]),
                    str(r["output_tokens"]),
                    r["metric"],
                    _value(r["metric"], r["measured"]),
                    _value(r["metric"], r["predicted"]),
                    f"{r['error']:+.1%}",
                    f"{r['predicted_tpot_s'] * 1000:.1f} ms",
                    f"{r['predicted_mean_batch']:.1f}",
                ]
                for r in rows
            ],
        ),
    ]
    s = error_summary([r["error"] for r in held])
    lines.append(
        f"held-out: median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
        f"({len(held)} rows)"
    )
    return "\n".join(lines) + "\n"
