"""Rendering replay results: the table, the tidy CSV, per-layer and mask-build CSVs, and
Perfetto timelines. The JSON contract itself is `ReplayResult.contract` (replay/result.py).

`about` is what the command knows of the workload (trace files, synthetic, DART's
dense-step fraction and drift detection rate): identity fields printed in the header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dartsim.engine.costing import StepCoster
from dartsim.engine.replay_config import ReplayStep
from dartsim.replay.result import COMPONENTS, PARTS, Component, LayerPart, ReplayResult, RunResult
from dartsim.replay.steps import step_at
from dartsim.report import render
from dartsim.text import printable
from dartsim.units import GB, TFLOP, US_PER_S, format_seconds


def _tp_text(result: ReplayResult) -> str:
    s = result.setup
    if s.tp == 1:
        return ""
    return f" x{s.tp} (tensor parallel, {s.allreduce} all-reduce)"


def _fmt_rate(seconds: float | None) -> str:
    return "n/a" if seconds is None else format_seconds(seconds)


def render_table(result: ReplayResult, about: Mapping[str, Any]) -> str:
    s, run = result.setup, result.run
    t = run.totals
    lines = [
        f"model {printable(s.model)} on {printable(s.hw)}{_tp_text(result)}, "
        f"batch {s.batch}, "
        f"masks applied by {s.mask_apply}, weight prefetch {'on' if s.prefetch else 'off'}, "
        f"{s.launch} launch",
        f"software stack   {printable(s.stack)}",
    ]
    if s.retargeted_from:
        lines.append(f"RETARGETED from {s.retargeted_from}: keep ratios mapped by normalised depth")
    if about.get("synthetic"):
        lines.append("SYNTHETIC workload")
    if "dense_step_fraction" in about:
        rate = about.get("drift_detection_rate")
        lines.append(
            f"DART             dense-step fraction {about['dense_step_fraction']:.2f}, drift detection rate "
            + ("n/a (no drift check)" if rate is None else f"{rate:.2f}")
        )
    lines += [
        f"tokens           {run.tokens}",
        f"DRAM traffic     {t.bytes / GB:.3f} GB per device (1 GB = 1e9 B)",
        f"FLOPs            {t.flops / TFLOP:.3f} TFLOP per device (1e12)",
        f"time             {format_seconds(t.time_s)}",
        f"TTFT             {_fmt_rate(run.ttft_s)} until the last sequence's first token"
        + (
            f"; per sequence mean {_fmt_rate(run.ttft_mean_s)}, p99 {_fmt_rate(run.ttft_p99_s)}"
            if s.batch > 1
            else ""
        ),
        f"TPOT             mean {_fmt_rate(run.tpot_s)}, p50 {_fmt_rate(run.tpot_p50_s)}, "
        f"p99 {_fmt_rate(run.tpot_p99_s)}",
        f"throughput       {run.tokens_per_s:.2f} tokens/s" if run.tokens_per_s else "throughput       n/a",
        f"mask builds      {len(run.mask_builds)}, {format_seconds(run.mask_build_time_s)} in all",
    ]
    dense = result.dense
    if dense is not None:
        lines.append(f"dense baseline   {format_seconds(dense.totals.time_s)}: speedup {result.speedup:.3f}x")
    lines += _component_lines(run, dense)
    header = ["layer (run totals)"]
    for short in ("attn", "mlp"):
        header += [f"{short} GB", f"{short} TFLOP", f"{short} time", f"{short} bound"]
        if dense:
            header += [f"{short} GB dense", f"{short} time dense"]

    def cells_of(
        parts: Sequence[LayerPart | Component], dense_parts: Sequence[LayerPart | Component] | None
    ) -> list[str]:
        cells = []
        for j, c in enumerate(parts):
            bound = c.bound if isinstance(c, LayerPart) else None
            cells += [
                f"{c.bytes / GB:.3f}",
                f"{c.flops / TFLOP:.4f}",
                format_seconds(c.time_s),
                str(bound) if isinstance(c, LayerPart) else "",
            ]
            if dense_parts is not None:
                d = dense_parts[j]
                cells += [f"{d.bytes / GB:.3f}", format_seconds(d.time_s)]
        return cells

    rows = []
    for i, row in enumerate(run.layers):
        dense_row = [dense.layers[i].part(p) for p in PARTS] if dense else None
        rows.append([str(row.layer), *cells_of([row.part(p) for p in PARTS], dense_row)])
    dense_all = [dense.components[p] for p in PARTS] if dense else None
    rows.append(["all layers", *cells_of([run.components[p] for p in PARTS], dense_all)])
    return "\n".join(lines) + "\n\n" + render.markdown_table(header, rows)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _component_lines(run: RunResult, dense: RunResult | None) -> list[str]:
    """Attention, MLP and other: their cost and shares, beside the dense run's shares
    (the rebalancing) when there is one."""
    lines = [
        "components       share of DRAM bytes / of time"
        + ("  (dense run: bytes / time)" if dense else "")
        + "; other = embedding, norms, lm_head, mask builds"
    ]
    for name in COMPONENTS:
        c = run.components[name]
        line = (
            f"  {name:<14} {c.bytes / GB:10.3f} GB {_share(c.share_bytes):>6} / "
            f"{format_seconds(c.time_s)} {_share(c.share_time):>6}"
        )
        if dense:
            d = dense.components[name]
            line += f"  (dense {_share(d.share_bytes)} / {_share(d.share_time)})"
        lines.append(line)
    tokens = run.tokens
    if tokens:
        t = run.totals
        lines.append(
            f"per token        {t.bytes / tokens / GB:.4f} GB, {t.flops / tokens / TFLOP:.5f} TFLOP, "
            f"{format_seconds(t.time_s / tokens)} (run totals / {tokens} generated tokens)"
        )
    lines += _energy_lines(run, dense)
    return lines


def _energy_lines(run: RunResult, dense: RunResult | None) -> list[str]:
    """Energy, where the hardware file has an energy section (docs/energy.md)."""
    e, p = run.totals.energy, run.power
    if e is None or not p.get("energy_per_token_j"):
        return []
    line = (
        f"energy           {e.j:.4g} J per device ({e.low_j:.4g} to {e.high_j:.4g}); "
        f"{p['energy_per_token_j']:.4g} J per token on all devices; "
        f"{p['avg_power_w']:.0f} W average per device (board limit {p['board_power_w']:.0f} W)"
    )
    if p["over_board_power"]:
        line += ": above the limit, where the device would clock down (not modelled)"
    out = [line]
    if dense is not None and dense.power.get("energy_per_token_j"):
        out.append(
            f"energy dense     {dense.power['energy_per_token_j']:.4g} J per token: "
            f"{dense.power['energy_per_token_j'] / p['energy_per_token_j']:.3f}x the run's"
        )
    parts = []
    for name in COMPONENTS:
        ce = run.components[name].energy
        if ce is not None and e.j:
            parts.append(f"{name} {100 * ce.j / e.j:.1f}%")
    out.append("energy by part   " + ", ".join(parts))
    return out


TIDY_HEADER = ("run", "stack", "scope", "component", "metric", "value", "unit")
_UNITS = {"bytes": "B", "flops": "FLOP", "time_s": "s", "share_bytes": "fraction", "share_time": "fraction"}


def tidy_rows(result: ReplayResult, label: str = "run") -> list[list[Any]]:
    """Long-format rows (run, stack, scope, component, metric, value, unit): the run and
    its dense twin (labelled `dense`); totals, components and layers; TTFT, TPOT and the
    speedup."""
    rows: list[list[Any]] = []
    runs = [(label, result.run)] + ([("dense", result.dense)] if result.dense is not None else [])
    for name, run in runs:
        t = run.totals
        for key, value in (("bytes", t.bytes), ("flops", t.flops), ("time_s", t.time_s)):
            rows.append([name, "total", "all", key, value, _UNITS[key]])
        per_run: tuple[tuple[str, float | None, str], ...] = (
            ("ttft_s", run.ttft_s, "s"),
            ("ttft_mean_s", run.ttft_mean_s, "s"),
            ("ttft_p99_s", run.ttft_p99_s, "s"),
            ("tpot_s", run.tpot_s, "s"),
            ("tokens_per_s", run.tokens_per_s, "tokens/s"),
        )
        for key, maybe, unit in per_run:
            if maybe is not None:
                rows.append([name, "total", "all", key, maybe, unit])
        if t.energy is not None:
            rows.append([name, "total", "all", "energy_j", t.energy.j, "J"])
            for key in ("energy_per_token_j", "avg_power_w"):
                if run.power.get(key) is not None:
                    rows.append(
                        [name, "total", "all", key, run.power[key], "J" if key.endswith("_j") else "W"]
                    )
        for component in COMPONENTS:
            c = run.components[component].as_dict()
            for key, unit in _UNITS.items():
                if c[key] is not None:
                    rows.append([name, "total", component, key, c[key], unit])
            if c["energy_j"] is not None:
                rows.append([name, "total", component, "energy_j", c["energy_j"], "J"])
        for layer in run.layers:
            for part in PARTS:
                lp = layer.part(part)
                for key, value in (("bytes", lp.bytes), ("flops", lp.flops), ("time_s", lp.time_s)):
                    rows.append([name, f"layer {layer.layer}", part, key, value, _UNITS[key]])
                if lp.energy is not None:
                    rows.append([name, f"layer {layer.layer}", part, "energy_j", lp.energy.j, "J"])
    if result.speedup is not None:
        rows.append([label, "total", "all", "speedup_vs_dense", result.speedup, "ratio"])
    stack = result.setup.stack
    return [[row[0], stack, *row[1:]] for row in rows]


def tidy_csv(result: ReplayResult) -> str:
    """`tidy_rows` as CSV, which pandas reads as is."""
    return render.csv_text(list(TIDY_HEADER), tidy_rows(result))


def layers_csv(result: ReplayResult) -> str:
    keys = ("bytes", "flops", "time_s", "bound")
    header = ["layer"] + [f"{part}_{k}" for part in PARTS for k in keys]
    rows = [
        [row.layer] + [getattr(row.part(part), k) for part in PARTS for k in keys]
        for row in result.run.layers
    ]
    return render.csv_text(header, rows)


def retriggers_csv(result: ReplayResult) -> str:
    header = ["step", "time_s", "bytes", "host_bytes", "flops"]
    return render.csv_text(header, [[getattr(b, k) for k in header] for b in result.run.mask_builds])


def perfetto_events(
    coster: StepCoster, steps: Sequence[ReplayStep], step_times: Any, first: int, last: int
) -> dict[str, Any]:
    """Chrome trace-event JSON of steps first..last (inclusive), one track per resource."""
    offset = float(sum(step_times[:first]))
    tracks: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for index in range(first, last + 1):
        step = step_at(steps, index)
        _, result = coster.simulate(step, step.contexts, timeline=True)
        events.append(
            {
                "name": f"step {index} ({step.phase})",
                "ph": "X",
                "pid": 1,
                "tid": 0,
                "ts": offset * US_PER_S,
                "dur": result.time_s * US_PER_S,
                "cat": "step",
            }
        )
        for span in result.spans:
            tid = tracks.setdefault(span.track, len(tracks) + 1)
            events.append(
                {
                    "name": span.name,
                    "ph": "X",
                    "pid": 1,
                    "tid": tid,
                    "ts": (offset + span.start_s) * US_PER_S,
                    "dur": max(span.end_s - span.start_s, 0.0) * US_PER_S,
                    "cat": span.track,
                }
            )
        offset += float(step_times[index])
    tp = coster.config.tp
    device_name = (
        "dartsim device 0"
        if tp == 1
        else f"dartsim device 0 of {tp} (tensor parallel: every device runs the same kernels on "
        "its shard, collectives included; device 0 shown)"
    )
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": device_name}}]
    meta.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "steps"}})
    for name, tid in tracks.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}})
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}
