"""Rendering a serving run: the summary table, tidy per-request CSV, a Perfetto timeline of
iterations, and the plots of `dartsim report serve`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dartsim.report import render
from dartsim.report.plots import OKABE_ITO, _figure, _png
from dartsim.serve.result import per_request
from dartsim.serve.sim import ServeRun
from dartsim.units import MS_PER_S, US_PER_S

METRICS = ("ttft_s", "tpot_s", "e2e_s", "queue_s")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * MS_PER_S:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def summary_md(payload: dict[str, Any]) -> str:
    """The run (beside its dense twin when there is one) as markdown."""
    s = payload["setup"]
    runs = [("run", payload)] + ([("dense", payload["dense"])] if "dense" in payload else [])
    lines = [
        f"# Serving {s['model']} on {s['replicas']} x {s['hw']} (TP {s['tp']}, {s['stack']})",
        "",
        f"{payload['requests']} requests ({s['workload']}), seed {s['seed']}; scheduler: "
        f"{s['scheduler']['max_num_seqs']} sequences and {s['scheduler']['max_num_batched_tokens']} tokens "
        f"per iteration, chunked prefill {'on' if s['scheduler']['chunked_prefill'] else 'off'}, "
        f"preemption by {s['scheduler']['preemption']}; KV cache {s['kv_cache']['tokens_per_replica']} "
        f"tokens per replica; masks from {s['masks']} traces.",
        "",
    ]
    header = ["metric (ms)", *(name for name, _ in runs)]
    rows = []
    for metric in METRICS:
        for stat in ("mean", "p50", "p90", "p99"):
            rows.append([f"{metric.removesuffix('_s')} {stat}", *(_ms(r[metric][stat]) for _, r in runs)])
    lines.append(render.markdown_table(header, rows))
    other = [
        ("throughput (tokens/s)", "throughput_tokens_per_s", 4),
        ("requests/s", "requests_per_s", 4),
        ("duration (s)", "duration_s", 4),
        ("iterations", "iterations", 6),
        ("mean batch", "mean_batch", 3),
        ("mean kept fraction", "mean_kept_fraction", 3),
        ("dense iteration share", "dense_iteration_share", 3),
        ("mask builds", "mask_builds", 6),
        ("preemptions", "preemptions", 6),
    ]
    if "slo_attainment" in payload:
        other += [
            ("SLO attainment", "slo_attainment", 3),
            ("goodput (requests/s)", "goodput_requests_per_s", 4),
        ]
    rows = [[label, *(_num(r.get(key), d) for _, r in runs)] for label, key, d in other]
    lines.append(render.markdown_table(["", *(name for name, _ in runs)], rows))
    if payload.get("throughput_vs_dense") is not None:
        lines.append(f"Throughput against dense: {payload['throughput_vs_dense']:.3f}x.\n")
    return "\n".join(lines)


def load_md(title: str, rows: Sequence[tuple[float, dict[str, Any], dict[str, Any]]], slo: Any) -> str:
    """Per arrival rate: p99 TTFT and TPOT, throughput and kept fraction, masks beside dense."""
    header = ["rate (req/s)", "p99 TTFT masks (ms)", "p99 TTFT dense (ms)", "p99 TPOT masks (ms)",
              "p99 TPOT dense (ms)", "tokens/s masks", "tokens/s dense", "kept fraction",
              "dense iterations"]  # fmt: skip
    table = [
        [f"{rate:g}", _ms(m["ttft_s"]["p99"]), _ms(d["ttft_s"]["p99"]), _ms(m["tpot_s"]["p99"]),
         _ms(d["tpot_s"]["p99"]), _num(m["throughput_tokens_per_s"], 4),
         _num(d["throughput_tokens_per_s"], 4),
         _num(m["mean_kept_fraction"]), _num(m["dense_iteration_share"])]
        for rate, m, d in rows
    ]  # fmt: skip
    out = [f"# Serving {title}: masks against dense by load", "", render.markdown_table(header, table)]
    if slo.given:
        att = [[f"{rate:g}", _num(m["slo_attainment"]), _num(d["slo_attainment"])] for rate, m, d in rows]
        out.append(
            render.markdown_table(["rate (req/s)", "SLO attainment masks", "SLO attainment dense"], att)
        )
    return "\n".join(out)


def requests_csv(run: ServeRun, dense: ServeRun | None = None) -> str:
    """Tidy rows: one per request and run."""
    fields = ("request", "replica", "arrival_s", "prompt_tokens", "output_tokens", "trace",
              "queue_s", "ttft_s", "tpot_s", "e2e_s", "preemptions")  # fmt: skip
    rows = []
    for label, r in (("run", run), ("dense", dense)):
        if r is None:
            continue
        cols = per_request(r)
        for i in range(len(r.requests)):
            rows.append([label, *(_cell(cols[f][i]) for f in fields)])
    return render.csv_text(("run", *fields), rows)


def _cell(value: Any) -> str:
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    value = float(value)
    return "" if np.isnan(value) else repr(value)


def perfetto(run: ServeRun, limit: int | None = None) -> dict[str, Any]:
    """Iterations as Chrome/Perfetto complete events, one track per replica."""
    it = run.iterations
    count = it["time_s"].size if limit is None else min(limit, it["time_s"].size)
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "dartsim serve"}},
    ]
    for replica in sorted(set(int(x) for x in it["replica"][:count])):
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": 0,
                "tid": replica,
                "args": {"name": f"replica {replica}"},
            }
        )
    for i in range(count):
        events.append(
            {
                "name": "dense" if bool(it["dense"][i]) else "masked",
                "ph": "X",
                "pid": 0,
                "tid": int(it["replica"][i]),
                "ts": float(it["start_s"][i]) * US_PER_S,
                "dur": float(it["time_s"][i]) * US_PER_S,
                "args": {
                    "sequences": int(it["sequences"][i]),
                    "prompt_tokens": int(it["prompt_tokens"][i]),
                    "kept_fraction": round(float(it["kept_fraction"][i]), 6),
                    "mask_builds": int(it["mask_builds"][i]),
                },
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def latency_vs_load(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], metric: str, title: str
) -> bytes:
    """p99 `metric` (ms) against arrival rate, one curve per policy."""
    fig, ax = _figure()
    for i, (label, rates, values) in enumerate(curves):
        ax.plot(
            rates,
            [v * MS_PER_S for v in values],
            marker="o",
            color=OKABE_ITO[i % len(OKABE_ITO)],
            label=label,
        )
    ax.set_xlabel("arrival rate (requests/s)")
    ax.set_ylabel(f"p99 {metric} (ms)")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def union_vs_batch(
    points: Sequence[tuple[str, np.ndarray, np.ndarray]], bound_keep: float | None, title: str
) -> bytes:
    """Mean kept fraction of masked iterations against their batch size, beside the
    independent-mask bound 1 - (1 - k)^b."""
    fig, ax = _figure()
    top = 1
    for i, (label, batch, kept) in enumerate(points):
        sizes = np.unique(batch)
        means = [float(kept[batch == b].mean()) for b in sizes]
        ax.plot(sizes, means, marker=".", linestyle="-", color=OKABE_ITO[i % len(OKABE_ITO)], label=label)
        top = max(top, int(sizes.max()) if sizes.size else 1)
    if bound_keep is not None:
        b = np.arange(1, top + 1)
        ax.plot(
            b,
            1 - (1 - bound_keep) ** b,
            linestyle="--",
            color=OKABE_ITO[7],
            label=f"independent masks, k={bound_keep:.2f}",
        )
    ax.set_xlabel("sequences in the iteration")
    ax.set_ylabel("MLP neurons fetched (fraction of the model's)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def time_series(run: ServeRun, title: str) -> bytes:
    """Batch size and kept fraction over time."""
    it = run.iterations
    fig, ax = _figure()
    ax.plot(
        it["start_s"], it["sequences"], color=OKABE_ITO[0], linewidth=0.8, label="sequences per iteration"
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sequences per iteration")
    twin = ax.twinx()
    twin.plot(it["start_s"], it["kept_fraction"], color=OKABE_ITO[1], linewidth=0.8, label="kept fraction")
    twin.set_ylabel("MLP neurons fetched (fraction)")
    twin.set_ylim(0, 1.05)
    ax.set_title(title)
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    return _png(fig)
