"""Assembling and rendering replay results (the JSON contract, tables, CSV, Perfetto)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dartsim.engine.costing import PARTS, ReplayConfig, ReplayStep, StepCoster
from dartsim.engine.machine import device
from dartsim.engine.run import COMPONENTS
from dartsim.engine.steps import step_at
from dartsim.report import render
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.text import printable
from dartsim.units import GB, TFLOP, format_seconds


def contract(
    result: dict[str, Any],
    spec: ModelSpec,
    hw: HardwareSpec,
    config: ReplayConfig,
    batch: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The stable JSON object of `dartsim replay` / `dartsim simulate`."""
    body = {k: v for k, v in result.items() if k != "step_times_s"}
    p = config.precision
    dev = device(hw, config.launch, config.prefetch)
    return {
        "model": spec.name,
        "hw": hw.name,
        "tp": config.tp,
        "batch": batch,
        "mask_apply": config.mask_apply,
        "prefetch": dev.prefetch,
        "launch": dev.launch_mode,
        "allreduce": config.execution(hw).allreduce if config.tp > 1 else None,
        "memoized": config.memoize,
        "precision": {"weight": p.weight.name, "activation": p.activation.name, "kv_cache": p.kv_cache.name},
        **body,
        **extra,
    }


def _tp_text(data: dict[str, Any]) -> str:
    if data["tp"] == 1:
        return ""
    return f" x{data['tp']} (tensor parallel, {data['allreduce']} all-reduce)"


def _fmt_rate(seconds: float | None) -> str:
    return "n/a" if seconds is None else format_seconds(seconds)


def render_table(data: dict[str, Any]) -> str:
    t = data["totals"]
    lines = [
        f"model {printable(data['model'])} on {printable(data['hw'])}{_tp_text(data)}, "
        f"batch {data['batch']}, "
        f"masks applied by {data['mask_apply']}, weight prefetch {'on' if data['prefetch'] else 'off'}, "
        f"{data['launch']} launch",
    ]
    if data.get("retargeted_from"):
        lines.append(f"RETARGETED from {data['retargeted_from']}: keep ratios mapped by normalised depth")
    if data.get("synthetic"):
        lines.append("SYNTHETIC workload")
    if "dense_step_fraction" in data:
        rate = data.get("drift_detection_rate")
        lines.append(
            f"DART             dense-step fraction {data['dense_step_fraction']:.2f}, drift detection rate "
            + ("n/a (no drift check)" if rate is None else f"{rate:.2f}")
        )
    lines += [
        f"tokens           {data['tokens']}",
        f"DRAM traffic     {t['bytes'] / GB:.3f} GB per device (1 GB = 1e9 B)",
        f"FLOPs            {t['flops'] / TFLOP:.3f} TFLOP per device (1e12)",
        f"time             {format_seconds(t['time_s'])}",
        f"TTFT             {_fmt_rate(data['ttft_s'])}",
        f"TPOT             mean {_fmt_rate(data['tpot_s'])}, p50 {_fmt_rate(data['tpot_p50_s'])}, "
        f"p99 {_fmt_rate(data['tpot_p99_s'])}",
        f"throughput       {data['tokens_per_s']:.2f} tokens/s"
        if data["tokens_per_s"]
        else "throughput       n/a",
        f"mask builds      {len(data['retriggers'])}, "
        f"{format_seconds(sum(r['time_s'] for r in data['retriggers']))} in all",
    ]
    if "dense" in data:
        lines.append(
            f"dense baseline   {format_seconds(data['dense']['totals']['time_s'])}: "
            f"speedup {data['speedup']:.3f}x"
        )
    lines += _component_lines(data)
    dense = data.get("dense")
    header = ["layer (run totals)"]
    for short in ("attn", "mlp"):
        header += [f"{short} GB", f"{short} TFLOP", f"{short} time", f"{short} bound"]
        if dense:
            header += [f"{short} GB dense", f"{short} time dense"]

    def cells_of(row: dict[str, Any], dense_row: dict[str, Any] | None, bound: bool) -> list[str]:
        cells = []
        for part in PARTS:
            c = row[part]
            cells += [
                f"{c['bytes'] / GB:.3f}",
                f"{c['flops'] / TFLOP:.4f}",
                format_seconds(c["time_s"]),
                str(c.get("bound")) if bound else "",
            ]
            if dense_row is not None:
                d = dense_row[part]
                cells += [f"{d['bytes'] / GB:.3f}", format_seconds(d["time_s"])]
        return cells

    rows = []
    for i, row in enumerate(data["layers"]):
        rows.append([str(row["layer"]), *cells_of(row, dense["layers"][i] if dense else None, True)])
    rows.append(["all layers", *cells_of(data["components"], dense["components"] if dense else None, False)])
    return "\n".join(lines) + "\n\n" + render.markdown_table(header, rows)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _component_lines(data: dict[str, Any]) -> list[str]:
    """Attention, MLP and other: their cost and shares, beside the dense run's shares
    (the rebalancing) when there is one."""
    dense = data.get("dense", {}).get("components")
    lines = [
        "components       share of DRAM bytes / of time"
        + ("  (dense run: bytes / time)" if dense else "")
        + "; other = embedding, norms, lm_head, mask builds"
    ]
    for name in COMPONENTS:
        c = data["components"][name]
        line = (
            f"  {name:<14} {c['bytes'] / GB:10.3f} GB {_share(c['share_bytes']):>6} / "
            f"{format_seconds(c['time_s'])} {_share(c['share_time']):>6}"
        )
        if dense:
            d = dense[name]
            line += f"  (dense {_share(d['share_bytes'])} / {_share(d['share_time'])})"
        lines.append(line)
    tokens = data["tokens"]
    if tokens:
        t = data["totals"]
        lines.append(
            f"per token        {t['bytes'] / tokens / GB:.4f} GB, {t['flops'] / tokens / TFLOP:.5f} TFLOP, "
            f"{format_seconds(t['time_s'] / tokens)} (run totals / {tokens} generated tokens)"
        )
    return lines


TIDY_HEADER = ("run", "scope", "component", "metric", "value", "unit")
_UNITS = {"bytes": "B", "flops": "FLOP", "time_s": "s", "share_bytes": "fraction", "share_time": "fraction"}


def tidy_csv(data: dict[str, Any]) -> str:
    """Long-format rows (run, scope, component, metric, value, unit) that pandas reads as is:
    the run and, with --compare-dense, the dense run; their totals, components and layers;
    TTFT, TPOT and the speedup."""
    rows: list[list[Any]] = []
    runs = [("run", data)] + ([("dense", data["dense"])] if "dense" in data else [])
    for label, run in runs:
        for key in ("bytes", "flops", "time_s"):
            rows.append([label, "total", "all", key, run["totals"][key], _UNITS[key]])
        for key in ("ttft_s", "tpot_s", "tokens_per_s"):
            if run.get(key) is not None:
                rows.append(
                    [label, "total", "all", key, run[key], "tokens/s" if key == "tokens_per_s" else "s"]
                )
        for name in COMPONENTS:
            for key, unit in _UNITS.items():
                value = run["components"][name][key]
                if value is not None:
                    rows.append([label, "total", name, key, value, unit])
        for layer in run["layers"]:
            for part in PARTS:
                for key in ("bytes", "flops", "time_s"):
                    rows.append([label, f"layer {layer['layer']}", part, key, layer[part][key], _UNITS[key]])
    if "speedup" in data:
        rows.append(["run", "total", "all", "speedup_vs_dense", data["speedup"], "ratio"])
    return render.csv_text(list(TIDY_HEADER), rows)


def layers_csv(data: dict[str, Any]) -> str:
    header = ["layer"] + [f"{part}_{k}" for part in PARTS for k in ("bytes", "flops", "time_s", "bound")]
    rows = [
        [row["layer"]] + [row[part][k] for part in PARTS for k in ("bytes", "flops", "time_s", "bound")]
        for row in data["layers"]
    ]
    return render.csv_text(header, rows)


def retriggers_csv(data: dict[str, Any]) -> str:
    header = ["step", "time_s", "bytes", "host_bytes"]
    return render.csv_text(header, [[r[k] for k in header] for r in data["retriggers"]])


def perfetto_events(
    coster: StepCoster, steps: Sequence[ReplayStep], step_times: Sequence[float], first: int, last: int
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
                "ts": offset * 1e6,
                "dur": result.time_s * 1e6,
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
                    "ts": (offset + span.start_s) * 1e6,
                    "dur": max(span.end_s - span.start_s, 0.0) * 1e6,
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
