"""The plots of `dartsim report TRACE...`: matplotlib, Agg, deterministic bytes (no
timestamp in the file), units on every axis, legends, and the Okabe-Ito palette, which
stays distinguishable under the common colour-vision deficiencies."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from dartsim.units import MS_PER_S

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
"""Okabe & Ito (2008), "Color Universal Design": blue, orange, green, vermillion, purple,
sky blue, yellow, black."""


def _figure(width: float = 8.0, height: float = 4.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def roofline(
    points: dict[str, list[tuple[float, float]]], peak_flops: float, bandwidth: float, title: str
) -> bytes:
    """Every kernel of one decode step as a point (FLOP/byte, achieved FLOP/s), per run
    label, under the device's roofline."""
    fig, ax = _figure()
    markers = {"dense": "o", "DART": "^"}
    for i, (label, pts) in enumerate(points.items()):
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(
                xs, ys, s=14, marker=markers.get(label, "s"), color=OKABE_ITO[i], alpha=0.7, label=label
            )
    every = [x for pts in points.values() for x, _ in pts] or [1.0]
    lo, hi = min(every) / 2, max(max(every) * 2, peak_flops / bandwidth * 4)
    ridge = peak_flops / bandwidth
    line = [lo, ridge, hi]
    ax.plot(
        line, [min(x * bandwidth, peak_flops) for x in line], color=OKABE_ITO[7], lw=1.2, label="roofline"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of DRAM traffic)")
    ax.set_ylabel("achieved (FLOP/s)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def per_layer(
    layers: dict[str, list[dict[str, Any]]], metric: str, unit: str, scale: float, title: str
) -> bytes:
    """Attention and MLP `metric` per layer, for each run label (dense, DART)."""
    fig, ax = _figure()
    styles = {"dense": "--", "DART": "-"}
    for j, part in enumerate(("attention", "mlp")):
        for label, rows in layers.items():
            ys = [row[part][metric] / scale for row in rows]
            ax.plot(
                range(len(ys)),
                ys,
                styles.get(label, ":"),
                color=OKABE_ITO[j],
                lw=1.4,
                label=f"{part}, {label}",
            )
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{metric.replace('_s', '')} over the run ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def rebalancing(shares: Sequence[tuple[str, dict[str, Any], dict[str, Any]]], title: str) -> bytes:
    """Stacked bars of attention, MLP and other shares of bytes and of time, dense beside
    DART, for each model: (model, dense components, DART components)."""
    fig, ax = _figure(width=max(6.0, 2.6 * len(shares) + 2))
    labels, bottoms = [], []
    for model, dense, sparse in shares:
        for run, parts in (("dense", dense), ("DART", sparse)):
            for metric in ("bytes", "time"):
                labels.append(f"{model}\n{run} {metric}")
                bottoms.append(parts)
    x = range(len(labels))
    base = [0.0] * len(labels)
    for j, part in enumerate(("attention", "mlp", "other")):
        values = [
            100 * (parts[part]["share_bytes" if "bytes" in lab else "share_time"] or 0.0)
            for parts, lab in zip(bottoms, labels, strict=True)
        ]
        ax.bar(x, values, bottom=base, color=OKABE_ITO[j], label=part, hatch=("", "//", "..")[j])
        base = [b + v for b, v in zip(base, values, strict=True)]
    ax.set_xticks(list(x), labels, fontsize=7)
    ax.set_ylabel("share of the run (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def step_times(times_s: Sequence[float], prefill_steps: int, retriggers: Sequence[int], title: str) -> bytes:
    """Step time over the run; prefill shaded, mask builds marked."""
    fig, ax = _figure()
    ax.plot(range(len(times_s)), [t * MS_PER_S for t in times_s], color=OKABE_ITO[0], lw=1.0, label="step")
    if prefill_steps:
        ax.axvspan(-0.5, prefill_steps - 0.5, color=OKABE_ITO[5], alpha=0.3, label="prefill")
    for j, step in enumerate(retriggers):
        ax.axvline(step, color=OKABE_ITO[3], ls=":", lw=1.0, label="mask build" if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step (0 = prefill)")
    ax.set_ylabel("step time (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def kept_heatmap(kept_fraction: Sequence[Sequence[float]], title: str) -> bytes:
    """Kept fraction of FFN neurons per layer (rows) and mask epoch (columns)."""
    fig, ax = _figure(width=6.0, height=5.0)
    columns = len(kept_fraction[0]) if kept_fraction else 0
    image = ax.imshow(kept_fraction, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, origin="lower")
    ax.set_xticks(range(columns))
    ax.set_xlabel("mask epoch")
    ax.set_ylabel("layer")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="kept fraction of FFN neurons")
    return _png(fig)


def drift(curves: Sequence[tuple[str, Sequence[float], Sequence[int]]], window: int, title: str) -> bytes:
    """The drift similarity of each trace over generated tokens, its re-triggers marked."""
    fig, ax = _figure()
    for i, (label, similarity, retriggers) in enumerate(curves):
        color = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(range(1, len(similarity) + 1), similarity, color=color, lw=1.2, label=label)
        for j, step in enumerate(retriggers):
            ax.axvline(step, color=color, ls=":", lw=1.0, label=f"{label}: re-trigger" if j == 0 else None)
    ax.set_xlabel("generated token")
    ax.set_ylabel(f"cosine similarity to the reference (window {window}, 1 = same)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def speedups(
    labels: Sequence[str], values: Sequence[float], title: str, ylabel: str = "speedup over dense (x)"
) -> bytes:
    """One bar per study point: its gain over dense (1 = no gain)."""
    fig, ax = _figure(width=max(6.0, 0.45 * len(labels) + 2))
    ax.bar(range(len(labels)), values, color=OKABE_ITO[0])
    ax.axhline(1.0, color=OKABE_ITO[7], lw=1.0, ls="--", label="dense (1x)")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (higher is better on both),
    sorted by the first."""
    front = sorted(set(points))
    return [
        p
        for p in front
        if not any((o[0] >= p[0] and o[1] > p[1]) or (o[0] > p[0] and o[1] >= p[1]) for o in front)
    ]


def pareto(
    series: Sequence[tuple[str, Sequence[Sequence[tuple[float, float]]]]], panels: Sequence[str]
) -> bytes:
    """Quality (top-1 agreement with dense, %) against speedup over dense, one panel per
    target (two per row); `series` holds per policy, per panel, its (speedup, agreement)
    points. The dashed line joins the points of buildable policies that no other beats on
    both (an oracle series, an upper bound, is drawn but left out of it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.3 * rows), dpi=100, squeeze=False)
    for p, title in enumerate(panels):
        ax = axes[p // cols][p % cols]
        buildable = []
        for i, (name, values) in enumerate(series):
            xs = [v[0] for v in values[p]]
            ys = [100 * v[1] for v in values[p]]
            if "oracle" not in name:
                buildable += list(zip(xs, ys, strict=True))
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            ax.scatter(xs, ys, color=colour, marker=MARKERS[i % len(MARKERS)], label=name, s=36)
        frontier = pareto_front(buildable)
        ax.plot(
            [f[0] for f in frontier], [f[1] for f in frontier], color=OKABE_ITO[7], lw=1, ls="--",
            label="frontier (buildable)",
        )  # fmt: skip
        ax.set_xlabel("speedup over dense (x, time per output token)")
        ax.set_ylabel("top-1 agreement with dense (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for q in range(len(panels), rows * cols):
        axes[q // cols][q % cols].set_visible(False)
    axes[0][0].legend(fontsize=7, loc="lower left")
    return _png(fig)


def energy_stacks(bars: Sequence[tuple[str, dict[str, float]]], title: str) -> bytes:
    """Stacked bars of joules per generated token by component: (label, {component: J})."""
    fig, ax = _figure(width=max(6.0, 1.2 * len(bars) + 3))
    x = range(len(bars))
    base = [0.0] * len(bars)
    for j, part in enumerate(("attention", "mlp", "other")):
        values = [parts.get(part, 0.0) for _, parts in bars]
        ax.bar(x, values, bottom=base, color=OKABE_ITO[j], label=part, hatch=("", "//", "..")[j])
        base = [b + v for b, v in zip(base, values, strict=True)]
    ax.set_xticks(list(x), [label for label, _ in bars], fontsize=7)
    ax.set_ylabel("energy per generated token (J, all devices)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def energy_vs_speedup(points: Sequence[tuple[str, float, float]], title: str) -> bytes:
    """One point per model: DART's speedup (x) against its energy per token over dense's (y)."""
    fig, ax = _figure(width=6.5)
    for i, (label, speedup, ratio) in enumerate(points):
        ax.scatter(
            [speedup], [ratio], color=OKABE_ITO[i % len(OKABE_ITO)], marker="os^Dv"[i % 5], label=label
        )
    ax.axhline(1.0, color=OKABE_ITO[7], lw=1.0, ls="--")
    ax.axvline(1.0, color=OKABE_ITO[7], lw=1.0, ls="--")
    ax.set_xlabel("speedup over dense (x)")
    ax.set_ylabel("energy per token, DART / dense")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
