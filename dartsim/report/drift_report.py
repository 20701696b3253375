"""Evidence from recorded traces: a Figure-5-style plot of last-layer attention similarity
(dense vs pruned vs pruned with tracing, re-triggers marked) and a table of re-trigger
rates."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.report import render
from dartsim.trace.summary import summarize
from dartsim.trace.types import Trace


def figure5_png(curves: Sequence[tuple[str, Trace]], title: str) -> bytes:
    """PNG bytes of the similarity curves; re-triggers of each traced run are marked.

    Each curve is (label, trace); the x axis is the generated-token index of each decode
    step. The PNG carries no timestamp, so the same traces give the same bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    styles = ["-", "--", "-"]
    for i, (label, trace) in enumerate(curves):
        sim = trace.figure5.similarity
        xs = list(range(1, sim.size + 1))
        line = ax.plot(xs, sim.tolist(), styles[i % len(styles)], lw=1.4, label=label)[0]
        steps = trace.retriggers.step.tolist()
        for j, step in enumerate(steps):
            # step s is decode step s (step 0 is the prefill) -> generated index s
            ax.axvline(step, color=line.get_color(), ls=":", lw=1.0, label="re-trigger" if j == 0 else None)
    window = curves[0][1].figure5.window
    ax.set_xlabel("generated token")
    ax.set_ylabel(f"cosine similarity (window of {window}) to the reference")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


RATE_FIELDS = (
    "trace",
    "model",
    "sparsity",
    "mode",
    "generated",
    "retriggers",
    "per_1k_tokens",
    "positions",
    "dense_steps",
    "mean_keep",
)


def retrigger_rows(paths: Sequence[Path], traces: Sequence[Trace]) -> list[dict[str, Any]]:
    if not traces:
        raise UserError("no trace given")
    rows = []
    for path, trace in zip(paths, traces, strict=True):
        info = summarize(trace, path)
        rows.append(
            {
                "trace": path.name,
                "model": info["model"],
                "sparsity": info["sparsity"],
                "mode": info["mode"],
                "generated": info["generated_tokens"],
                "retriggers": info["retriggers"],
                "per_1k_tokens": round(info["retriggers_per_1k_tokens"], 2),
                "positions": " ".join(str(p) for p in info["retrigger_positions"]),
                "dense_steps": info["dense_steps"],
                "mean_keep": None if info["mean_keep_ratio"] is None else round(info["mean_keep_ratio"], 4),
            }
        )
    return rows


def render_rates(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return render.json_text(rows)
    table = [["" if row[f] is None else str(row[f]) for f in RATE_FIELDS] for row in rows]
    if fmt == "csv":
        return render.csv_text(RATE_FIELDS, table)
    header = [
        "trace",
        "model",
        "sparsity",
        "mode",
        "generated tokens",
        "re-triggers",
        "per 1k tokens",
        "positions (context length)",
        "dense steps",
        "mean keep ratio",
    ]
    return (
        "# Re-triggers per trace\n\n"
        + render.markdown_table(header, table)
        + "\nPositions are sequence lengths (prompt included) at the step whose drift check fired."
        " Dense steps ran the FFN unmasked: the prefill, the first reference window and"
        " every post-trigger collection window.\n"
    )
