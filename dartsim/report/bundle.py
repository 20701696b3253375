"""`dartsim report TRACE... --hw NAME --models a,b --out DIR`: one folder with what an
architect came for. Each model replays the traces (retargeted where it is not theirs) as
recorded and dense; the folder gets summary.md, the tables as tidy CSV, and the plots of
report/plots.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dartsim.engine.costing import ReplayConfig, ReplayStep, StepCoster
from dartsim.engine.report import contract, tidy_csv
from dartsim.engine.run import COMPONENTS, choose_tp, densified, run_with_dense
from dartsim.engine.steps import build_steps, check_retarget, step_at, step_count
from dartsim.report import plots, render
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.text import printable
from dartsim.trace.schema import policy_section
from dartsim.trace.summary import dense_step_fraction, drift_detection_rate
from dartsim.units import GB, format_seconds
from dartsim.workload import Precision


@dataclass
class ModelRun:
    """The traces replayed as one model: DART as recorded and the dense baseline."""

    spec: ModelSpec
    tp: int
    retargeted_from: str | None
    sparse: dict[str, Any]
    dense: dict[str, Any]
    sparse_times: list[float]
    dense_times: list[float]
    roofline: dict[str, list[tuple[float, float]]]


def _masked_decode_index(steps: Sequence[ReplayStep], width: int) -> int | None:
    """A decode step under a mask, from the middle of the run on when there is one."""
    index, found = 0, None
    for step in steps:
        if step.phase == "decode" and any(k < width for k in step.kept):
            found = index + step.count // 2
            if index + step.count > step_count(steps) // 2:
                return found
        index += step.count
    return found


def _kernel_points(coster: StepCoster, step: ReplayStep) -> list[tuple[float, float]]:
    """(FLOP/byte, achieved FLOP/s) of every kernel with work and traffic; achieved uses the
    kernel's standalone time (launch plus its slowest resource)."""
    _, result = coster.simulate(step, step.contexts)
    return [
        (t.kernel.flops / t.kernel.bytes, t.kernel.flops / t.demand_s)
        for t in result.timings
        if t.kernel.flops > 0 and t.kernel.bytes > 0 and t.demand_s > 0
    ]


def replay_model(
    traces: Sequence[dict[str, Any]], spec: ModelSpec, hw: HardwareSpec, tp_text: str, config: ReplayConfig
) -> ModelRun:
    retarget, source = check_retarget(traces, spec)
    kv_positions = sum(int(t["steps"]["context_len"].max()) for t in traces)
    tp = choose_tp(spec, hw, config.precision, tp_text, kv_positions)
    config = ReplayConfig(**{**config.__dict__, "tp": tp})
    steps = build_steps(traces, spec, retarget, tp)
    dense_steps = densified(steps, spec.intermediate_size)
    sparse, dense = run_with_dense(steps, spec, hw, config)
    coster = StepCoster(spec, hw, config)
    points: dict[str, list[tuple[float, float]]] = {}
    masked = _masked_decode_index(steps, spec.intermediate_size)
    if masked is not None:
        points["dense"] = _kernel_points(coster, step_at(dense_steps, masked))
        points["DART"] = _kernel_points(coster, step_at(steps, masked))
    return ModelRun(
        spec,
        tp,
        source if retarget else None,
        contract(sparse, spec, hw, config, len(traces), {}),
        contract(dense, spec, hw, config, len(traces), {}),
        [float(t) for t in sparse["step_times_s"]],
        [float(t) for t in dense["step_times_s"]],
        points,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _policy_text(trace: dict[str, Any]) -> str:
    """`policy dsgp, sparsity 0.5` (DART traces: the DART sparsity)."""
    policy = policy_section(trace)
    sparsity = trace.get("dart", {}).get("sparsity", policy["params"].get("sparsity"))
    name = printable(policy["name"])
    return f"sparsity {sparsity}" if name == "dart" else f"policy {name}, sparsity {sparsity}"


def summary_md(
    names: Sequence[str], traces: Sequence[dict[str, Any]], runs: Sequence[ModelRun], hw: HardwareSpec
) -> str:
    lines = [
        f"# dartsim report on {printable(hw.name)}",
        "",
        "Traces (one batch): "
        + ", ".join(
            f"`{printable(n)}` ({printable(t['model']['name'])}, {_policy_text(t)}, "
            f"dense-step fraction {dense_step_fraction(t):.2f}, drift detection rate "
            + ("n/a" if drift_detection_rate(t) is None else f"{drift_detection_rate(t):.2f}")
            + ")"
            for n, t in zip(names, traces, strict=True)
        )
        + ".",
        "",
        "Each model replays the traces as recorded (under their policy) and fully dense; retargeted "
        "models map keep ratios by normalised depth. Bytes are DRAM traffic per device.",
        "",
    ]
    header = ["model", "TP", "TPOT dense", "TPOT DART", "speedup", "GB/token dense", "GB/token DART"]
    rows = []
    for r in runs:
        tokens = r.sparse["tokens"] or 1
        rows.append(
            [
                printable(r.spec.name) + (" (retargeted)" if r.retargeted_from else ""),
                str(r.tp),
                format_seconds(r.dense["tpot_s"]) if r.dense["tpot_s"] else "n/a",
                format_seconds(r.sparse["tpot_s"]) if r.sparse["tpot_s"] else "n/a",
                f"{r.dense['totals']['time_s'] / r.sparse['totals']['time_s']:.3f}x",
                f"{r.dense['totals']['bytes'] / tokens / GB:.3f}",
                f"{r.sparse['totals']['bytes'] / tokens / GB:.3f}",
            ]
        )
    lines += [
        render.markdown_table(header, rows).rstrip("\n"),
        "",
        "## The rebalancing: shares of bytes and time",
        "",
    ]
    header = ["model", "component", "bytes dense", "bytes DART", "time dense", "time DART"]
    rows = []
    for r in runs:
        for name in COMPONENTS:
            d, s = r.dense["components"][name], r.sparse["components"][name]
            rows.append(
                [
                    printable(r.spec.name),
                    name,
                    _pct(d["share_bytes"]),
                    _pct(s["share_bytes"]),
                    _pct(d["share_time"]),
                    _pct(s["share_time"]),
                ]
            )
    lines += [render.markdown_table(header, rows).rstrip("\n"), "", "## Files", ""]
    lines += [f"- `{name}`: {what}" for name, what in FILES]
    return "\n".join(lines) + "\n"


FILES = (
    ("results.csv", "every figure as tidy rows (model, run, scope, component, metric, value, unit)"),
    ("rebalancing.png", "attention, MLP and other shares of bytes and time, dense beside DART, per model"),
    ("roofline-MODEL.png", "every kernel of one masked decode step on the roofline, dense and DART"),
    ("layers-bytes-MODEL.png", "per-layer attention and MLP bytes over the run, dense and DART"),
    ("layers-time-MODEL.png", "per-layer attention and MLP time over the run, dense and DART"),
    ("step-time-MODEL.png", "step time over the run, prefill shaded, mask builds marked"),
    ("kept.png", "kept fraction per layer and mask epoch of the first trace (heatmap)"),
    ("drift.png", "each trace's drift similarity over generated tokens, re-triggers marked"),
)


def bundle(
    names: Sequence[str],
    traces: Sequence[dict[str, Any]],
    runs: Sequence[ModelRun],
    hw: HardwareSpec,
    precision: Precision,
) -> dict[str, bytes]:
    """File name -> bytes of everything the report folder holds."""
    files: dict[str, bytes] = {"summary.md": summary_md(names, traces, runs, hw).encode()}
    csv_parts = []
    for i, r in enumerate(runs):
        text = tidy_csv(
            {
                **r.sparse,
                "dense": r.dense,
                "speedup": r.dense["totals"]["time_s"] / r.sparse["totals"]["time_s"],
            }
        )
        lines = text.splitlines()
        body = [f"{r.spec.name},{line}" for line in lines[1:]]
        csv_parts += ([f"model,{lines[0]}"] if i == 0 else []) + body
    files["results.csv"] = ("\n".join(csv_parts) + "\n").encode()
    files["rebalancing.png"] = plots.rebalancing(
        [(r.spec.name, r.dense["components"], r.sparse["components"]) for r in runs],
        f"Attention/MLP rebalancing on {hw.name}",
    )
    peak_flops = hw.tensor_flops_per_s(precision.gemm_compute)
    for r in runs:
        model = r.spec.name
        files[f"roofline-{model}.png"] = plots.roofline(
            r.roofline,
            peak_flops,
            hw.memory.peak_bandwidth_bytes_per_s,
            f"{model} on {hw.name} x{r.tp}: kernels of one masked decode step",
        )
        layers = {"dense": r.dense["layers"], "DART": r.sparse["layers"]}
        files[f"layers-bytes-{model}.png"] = plots.per_layer(
            layers, "bytes", "GB", GB, f"{model} on {hw.name}: DRAM bytes per layer"
        )
        files[f"layers-time-{model}.png"] = plots.per_layer(
            layers, "time_s", "s", 1.0, f"{model} on {hw.name}: time per layer"
        )
        files[f"step-time-{model}.png"] = plots.step_times(
            r.sparse_times,
            1,
            [b["step"] for b in r.sparse["retriggers"]],
            f"{model} on {hw.name}: DART step time",
        )
    first = traces[0]
    width = first["model"]["intermediate_size"]
    kept = first["epochs"]["kept"]
    fractions = [
        [int(kept[e][layer]) / width for e in range(kept.shape[0])] for layer in range(kept.shape[1])
    ]
    files["kept.png"] = plots.kept_heatmap(
        fractions if kept.shape[0] else [[1.0] for _ in range(kept.shape[1])],
        f"{printable(names[0])}: kept FFN neurons per mask epoch",
    )
    files["drift.png"] = plots.drift(
        [
            (printable(n), t["figure5"]["similarity"].tolist(), t["retriggers"]["step"].tolist())
            for n, t in zip(names, traces, strict=True)
        ],
        int(first["figure5"]["window"]),
        "Drift similarity of each trace",
    )
    return files


def write_bundle(folder: Path, files: dict[str, bytes]) -> None:
    from dartsim.fileio import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        atomic_write_bytes(folder / name, files[name])
