"""A serving study's results (study/serving.py) as one table (CSV and markdown) and a plot
of each point's gain over dense: capacity at the targets, or throughput at a rate."""

from __future__ import annotations

from typing import Any

from dartsim.report import plots, render
from dartsim.report.study_common import axis_text, points_csv
from dartsim.units import MS_PER_S

AXES = ("model", "hardware", "stack", "tp", "precision", "masks", "load")


def is_serving(results: list[dict[str, Any]]) -> bool:
    return bool(results) and "serving" in results[0]["point"]


def results_csv(results: list[dict[str, Any]]) -> str:
    """One row per point: its axes, then the serving metrics (empty when skipped) and the reason."""
    from dartsim.study.serving import SERVING_METRICS

    return points_csv(results, AXES, SERVING_METRICS)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * MS_PER_S:.1f}"


def _gain(row: dict[str, Any]) -> float | None:
    """Capacity over dense at a capacity point; throughput over dense at a rate."""
    if row["capacity_vs_dense"] is not None:
        return float(row["capacity_vs_dense"])
    mine, dense = row["throughput_tokens_per_s"], row["dense_throughput_tokens_per_s"]
    return mine / dense if mine and dense else None


def _varying(results: list[dict[str, Any]]) -> list[str]:
    return [a for a in AXES if len({axis_text(r["point"], a) for r in results}) > 1]


def study_markdown(study: dict[str, Any], results: list[dict[str, Any]]) -> str:
    varying = _varying(results)
    header = [
        *(varying or ["point"]),
        "stack used",
        "TP",
        "rate (req/s)",
        "capacity dense / masks (req/s)",
        "capacity vs dense",
        "p99 TTFT dense / masks (ms)",
        "p99 TPOT dense / masks (ms)",
        "mean batch",
        "kept fraction",
        "dense iterations",
    ]
    rows = []
    for r in results:
        cells = [axis_text(r["point"], a) for a in varying] or ["all"]
        if "row" in r:
            x = r["row"]
            cap = (
                f"{x['dense_capacity_rate_per_s']:.2f} / {x['capacity_rate_per_s']:.2f}"
                if x["capacity_rate_per_s"] is not None and x["dense_capacity_rate_per_s"] is not None
                else "n/a"
            )
            cells += [
                str(x["stack_used"]),
                str(x["tp_used"]),
                f"{x['rate_per_s']:.2f}",
                cap,
                f"{x['capacity_vs_dense']:.3f}x" if x["capacity_vs_dense"] is not None else "n/a",
                f"{_ms(x['dense_ttft_p99_s'])} / {_ms(x['ttft_p99_s'])}",
                f"{_ms(x['dense_tpot_p99_s'])} / {_ms(x['tpot_p99_s'])}",
                f"{x['mean_batch']:.1f}",
                f"{x['mean_kept_fraction']:.3f}",
                f"{100 * x['dense_iteration_share']:.0f}%",
            ]
        else:
            cells += ["skipped: " + r["skipped"], *[""] * (len(header) - len(cells) - 1)]
        rows.append(cells)
    work = results[0]["point"]["serving"] if results else {}
    fixed = [f"{a} {axis_text(results[0]['point'], a)}" for a in AXES if a not in varying and results]
    lengths = work.get("lengths")
    shown = (
        f"{lengths['prompt_len']} + {lengths['gen_len']} tokens"
        if isinstance(lengths, dict)
        else f"{lengths}"
    )
    from dartsim.study.serving import SLO_KEYS

    slo = work.get("slo", {})
    targets = ", ".join(f"p99 {k.removesuffix('_s').upper()} <= {slo[k]:g} s" for k in SLO_KEYS if k in slo)
    return (
        f"# Study: {study['name']}\n\n{study['description'].strip()}\n\n"
        f"Fixed: {', '.join(fixed)}. Each point serves {work.get('requests')} requests (lengths: {shown}; "
        f"Poisson arrivals, seed {work.get('seed')}) with the masks' pool and dense. Capacity: the highest "
        f"Poisson rate meeting {targets or 'the targets'} (doubling from 1 req/s, then bisection to 2%); the "
        "other figures are those of the run at the point's rate (at capacity: the masks' capacity).\n\n"
        + render.markdown_table(header, rows)
    )


def gain_png(study: dict[str, Any], results: list[dict[str, Any]]) -> bytes:
    varying = _varying(results)
    done = [r for r in results if "row" in r and _gain(r["row"]) is not None]
    return plots.speedups(
        [", ".join(axis_text(r["point"], a) for a in varying) or "the point" for r in done],
        [float(_gain(r["row"]) or 0.0) for r in done],
        f"{study['name']}: masks over dense",
        "capacity (or throughput at the rate) over dense (x)",
    )
