"""`dartsim report TRACE... --hw NAME --models a,b --out DIR`: one folder with what an
architect came for. Each model replays the traces (retargeted where it is not theirs) as
recorded and dense; the folder gets summary.md, the tables as tidy CSV, and the plots of
report/plots.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dartsim.replay.per_model import ModelRun
from dartsim.replay.result import COMPONENTS, RunResult
from dartsim.report import plots, render
from dartsim.report.replay import TIDY_HEADER, tidy_rows
from dartsim.specs.hardware import HardwareSpec
from dartsim.text import printable
from dartsim.trace.summary import dense_step_fraction, drift_detection_rate
from dartsim.trace.types import Trace
from dartsim.units import GB, format_seconds
from dartsim.workload import Precision


def _runs(r: ModelRun) -> tuple[RunResult, RunResult]:
    """(as recorded, dense) of a model's replay."""
    dense = r.result.dense
    assert dense is not None, "the report folder replays every model beside its dense twin"
    return r.result.run, dense


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _policy_text(trace: Trace) -> str:
    """`policy dsgp, sparsity 0.5` (DART traces: the DART sparsity)."""
    sparsity = trace.sparsity
    name = printable(trace.policy.name)
    return f"sparsity {sparsity}" if name == "dart" else f"policy {name}, sparsity {sparsity}"


def summary_md(
    names: Sequence[str], traces: Sequence[Trace], runs: Sequence[ModelRun], hw: HardwareSpec
) -> str:
    lines = [
        f"# dartsim report on {printable(hw.name)}",
        "",
        "Traces (one batch): "
        + ", ".join(
            f"`{printable(n)}` ({printable(t.model.name)}, {_policy_text(t)}, "
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
        run, dense = _runs(r)
        tokens = run.tokens or 1
        rows.append(
            [
                printable(r.spec.name) + (" (retargeted)" if r.result.setup.retargeted_from else ""),
                str(r.tp),
                format_seconds(dense.tpot_s) if dense.tpot_s else "n/a",
                format_seconds(run.tpot_s) if run.tpot_s else "n/a",
                f"{dense.totals.time_s / run.totals.time_s:.3f}x",
                f"{dense.totals.bytes / tokens / GB:.3f}",
                f"{run.totals.bytes / tokens / GB:.3f}",
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
        run, dense = _runs(r)
        for name in COMPONENTS:
            d, s = dense.components[name], run.components[name]
            rows.append(
                [
                    printable(r.spec.name),
                    name,
                    _pct(d.share_bytes),
                    _pct(s.share_bytes),
                    _pct(d.share_time),
                    _pct(s.share_time),
                ]
            )
    lines += [render.markdown_table(header, rows).rstrip("\n"), ""]
    if hw.energy is not None:
        lines += [
            "## Energy per generated token (all devices; docs/energy.md)",
            "",
            render.markdown_table(
                ["model", "J/token dense", "J/token DART", "DART / dense", "speedup", "W per device DART"],
                [_energy_row(r) for r in runs],
            ).rstrip("\n"),
            "",
        ]
    lines += ["## Files", ""]
    lines += [f"- `{name}`: {what}" for name, what in FILES]
    if hw.energy is not None:
        lines += [f"- `{name}`: {what}" for name, what in ENERGY_FILES]
    return "\n".join(lines) + "\n"


def _energy_row(r: ModelRun) -> list[str]:
    run, dense = _runs(r)
    mine, theirs = run.power.get("energy_per_token_j"), dense.power.get("energy_per_token_j")
    if mine is None or theirs is None:
        return [printable(r.spec.name), "n/a", "n/a", "n/a", "n/a", "n/a"]
    return [
        printable(r.spec.name),
        f"{theirs:.4f}",
        f"{mine:.4f}",
        f"{mine / theirs:.3f}x",
        f"{dense.totals.time_s / run.totals.time_s:.3f}x",
        f"{run.power['avg_power_w']:.0f}",
    ]


ENERGY_FILES = (
    ("energy.png", "energy per generated token by component, dense beside DART, per model"),
    ("energy-vs-speedup.png", "DART's energy per token over dense's against its speedup, per model"),
)


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
    traces: Sequence[Trace],
    runs: Sequence[ModelRun],
    hw: HardwareSpec,
    precision: Precision,
) -> dict[str, bytes]:
    """File name -> bytes of everything the report folder holds."""
    files: dict[str, bytes] = {"summary.md": summary_md(names, traces, runs, hw).encode()}
    rows = [[r.spec.name, *row] for r in runs for row in tidy_rows(r.result)]
    files["results.csv"] = render.csv_text(["model", *TIDY_HEADER], rows).encode()

    def parts(run: RunResult) -> dict[str, dict[str, Any]]:
        return {name: c.as_dict() for name, c in run.components.items()}

    files["rebalancing.png"] = plots.rebalancing(
        [(r.spec.name, parts(_runs(r)[1]), parts(_runs(r)[0])) for r in runs],
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
        run, dense = _runs(r)
        layers = {"dense": dense.body()["layers"], "DART": run.body()["layers"]}
        files[f"layers-bytes-{model}.png"] = plots.per_layer(
            layers, "bytes", "GB", GB, f"{model} on {hw.name}: DRAM bytes per layer"
        )
        files[f"layers-time-{model}.png"] = plots.per_layer(
            layers, "time_s", "s", 1.0, f"{model} on {hw.name}: time per layer"
        )
        files[f"step-time-{model}.png"] = plots.step_times(
            [float(t) for t in run.step_times_s],
            1,
            [b.step for b in run.mask_builds],
            f"{model} on {hw.name}: DART step time",
        )
    if hw.energy is not None:
        files.update(_energy_plots(runs, hw))
    first = traces[0]
    width = first.width
    kept = first.epochs.kept
    fractions = [
        [int(kept[e][layer]) / width for e in range(kept.shape[0])] for layer in range(kept.shape[1])
    ]
    files["kept.png"] = plots.kept_heatmap(
        fractions if kept.shape[0] else [[1.0] for _ in range(kept.shape[1])],
        f"{printable(names[0])}: kept FFN neurons per mask epoch",
    )
    files["drift.png"] = plots.drift(
        [
            (printable(n), t.figure5.similarity.tolist(), t.retriggers.step.tolist())
            for n, t in zip(names, traces, strict=True)
        ],
        first.figure5.window,
        "Drift similarity of each trace",
    )
    return files


def write_bundle(folder: Path, files: dict[str, bytes]) -> None:
    """The report's files as one set (fileio.write_file_set: the old set or the new, never a mix)."""
    from dartsim.fileio import write_file_set

    write_file_set(folder, files)


def _energy_plots(runs: Sequence[ModelRun], hw: HardwareSpec) -> dict[str, bytes]:
    """energy.png and energy-vs-speedup.png (where every run has its energy)."""
    bars, points = [], []
    for r in runs:
        run, dense = _runs(r)
        for label, x in (("dense", dense), ("DART", run)):
            tokens = x.tokens or 1
            parts = {
                name: c.energy.j * r.tp / tokens for name, c in x.components.items() if c.energy is not None
            }
            bars.append((f"{r.spec.name}\n{label}", parts))
        mine, theirs = run.power.get("energy_per_token_j"), dense.power.get("energy_per_token_j")
        if mine and theirs:
            points.append((r.spec.name, dense.totals.time_s / run.totals.time_s, mine / theirs))
    return {
        "energy.png": plots.energy_stacks(bars, f"Energy per token by component on {hw.name}"),
        "energy-vs-speedup.png": plots.energy_vs_speedup(
            points, f"DART's energy against its speedup on {hw.name}"
        ),
    }
