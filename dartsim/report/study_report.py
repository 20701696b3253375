"""A study's results (study/runner.py) as one table (CSV and markdown) and a plot of the
speedup at every point."""

from __future__ import annotations

from typing import Any

from dartsim.report import plots, render, study_serving
from dartsim.report.study_common import axis_text, points_csv
from dartsim.study.runner import METRICS
from dartsim.units import MS_PER_S

AXES = (
    "model",
    "hardware",
    "stack",
    "tp",
    "mask_apply",
    "precision",
    "batch",
    "sparsity",
    "prompt_len",
    "gen_len",
)


def results_csv(results: list[dict[str, Any]]) -> str:
    """One row per point: its axes, then METRICS (empty when skipped) and the reason."""
    if study_serving.is_serving(results):
        return study_serving.results_csv(results)
    return points_csv(results, AXES, METRICS)


def _label(point: dict[str, Any], varying: list[str]) -> str:
    return ", ".join(axis_text(point, a) for a in varying) or "the point"


def study_markdown(study: dict[str, Any], results: list[dict[str, Any]]) -> str:
    if study_serving.is_serving(results):
        return study_serving.study_markdown(study, results)
    varying = [a for a in AXES if len({axis_text(r["point"], a) for r in results}) > 1]
    header = [
        *(varying or ["point"]),
        "stack used",
        "TP",
        "TPOT dense",
        "TPOT DART",
        "speedup",
        "attention share of time (dense / DART)",
        "J per token (dense / DART)",
    ]
    rows = []
    for r in results:
        cells = [axis_text(r["point"], a) for a in varying] or ["all"]
        if "row" in r:
            x = r["row"]
            cells += [
                str(x["stack_used"]),
                str(x["tp_used"]),
                f"{x['dense_tpot_s'] * MS_PER_S:.3f} ms" if x["dense_tpot_s"] else "n/a",
                f"{x['tpot_s'] * MS_PER_S:.3f} ms" if x["tpot_s"] else "n/a",
                f"{x['speedup']:.3f}x",
                f"{100 * x['dense_attention_share_time']:.1f}% / {100 * x['attention_share_time']:.1f}%",
                f"{x['dense_energy_per_token_j']:.4f} / {x['energy_per_token_j']:.4f}"
                if x.get("energy_per_token_j") is not None and x.get("dense_energy_per_token_j") is not None
                else "n/a",
            ]
        else:
            cells += ["skipped: " + r["skipped"], "", "", "", "", "", ""]
        rows.append(cells)
    fixed = [f"{a} {axis_text(results[0]['point'], a)}" for a in AXES if a not in varying and results]
    return (
        f"# Study: {study['name']}\n\n{study['description'].strip()}\n\n"
        f"Fixed: {', '.join(f for f in fixed if not f.endswith(' '))}. Each point replays the workload as "
        "DART and dense on one device model; speedup = dense time / DART time.\n\n"
        + render.markdown_table(header, rows)
    )


def speedup_png(study: dict[str, Any], results: list[dict[str, Any]]) -> bytes:
    if study_serving.is_serving(results):
        return study_serving.gain_png(study, results)
    varying = [a for a in AXES if len({axis_text(r["point"], a) for r in results}) > 1]
    done = [r for r in results if "row" in r]
    return plots.speedups(
        [_label(r["point"], varying) for r in done],
        [r["row"]["speedup"] for r in done],
        f"{study['name']}: DART speedup over dense",
    )
