"""`dartsim report`: evidence from recorded traces (Figure 5, re-trigger rates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dartsim.cli import emit
from dartsim.commands.common import add_format_and_out


def run_figure5(args: argparse.Namespace) -> int:
    from dartsim.fileio import atomic_write_bytes
    from dartsim.report.drift_report import figure5_png
    from dartsim.trace.io import load_trace

    curves = [
        ("dense", load_trace(args.dense)),
        ("pruned (first mask only)", load_trace(args.static)),
        ("pruned with tracing (DART)", load_trace(args.dart)),
    ]
    model = curves[2][1]["model"]["name"]
    sparsity = curves[2][1]["dart"].get("sparsity")
    title = f"Last-layer attention drift, {model}, {sparsity:.0%} FFN sparsity"
    atomic_write_bytes(args.out, figure5_png(curves, title))
    sys.stderr.write(f"wrote {args.out}\n")
    return 0


def run_retriggers(args: argparse.Namespace) -> int:
    from dartsim.report.drift_report import render_rates, retrigger_rows
    from dartsim.trace.io import load_trace

    paths = [Path(p) for p in args.traces]
    rows = retrigger_rows(paths, [load_trace(p) for p in paths])
    emit(render_rates(rows, args.format), args.out)
    return 0


def run_host_check(args: argparse.Namespace) -> int:
    from dartsim.commands.replay import _trace_spec
    from dartsim.report.host_check import compare, render_rows
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.trace.io import load_trace

    hw = load_hardware_spec(args.hw)
    rows = []
    for name in args.traces:
        path = Path(name)
        trace = load_trace(path)
        rows.append(compare(path, trace, _trace_spec(trace), hw, args.prefetch))
    emit(render_rows(rows, hw, args.format), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("report", help="figures and tables from recorded traces")
    report_sub = parser.add_subparsers(dest="report_command", metavar="REPORT", parser_class=type(parser))
    report_sub.required = True
    fig = report_sub.add_parser(
        "figure5",
        help="the paper's Figure 5: attention similarity, dense vs pruned vs DART, re-triggers marked",
        description=(
            "Plots each trace's cosine similarity between the mean last-layer attention output"
            " of a sliding window and the first reference's mean. Record the three traces with"
            " 'dartsim record --mode dense|static|dart' on the same prompt (traces/README.md)."
        ),
    )
    fig.add_argument("--dense", required=True, metavar="TRACE", help="trace recorded with --mode dense")
    fig.add_argument("--static", required=True, metavar="TRACE", help="trace recorded with --mode static")
    fig.add_argument("--dart", required=True, metavar="TRACE", help="trace recorded with --mode dart")
    fig.add_argument("--out", required=True, metavar="FILE.png")
    fig.set_defaults(handler=run_figure5)
    rates = report_sub.add_parser(
        "retriggers", help="re-triggers per 1k tokens, their positions and dense steps, per trace"
    )
    rates.add_argument("traces", nargs="+", metavar="TRACE")
    add_format_and_out(rates, ("md", "csv", "json"))
    rates.set_defaults(handler=run_retriggers)
    host = report_sub.add_parser(
        "host-check",
        help="predicted vs measured step times for traces recorded on this host",
        description=(
            "Replays traces with a preset calibrated on the recording machine "
            "(python benchmarks/calibrate_host.py) and compares step times with those measured."
        ),
    )
    host.add_argument("traces", nargs="+", metavar="TRACE")
    host.add_argument("--hw", default="cpu-host", help="calibrated preset or YAML (default cpu-host)")
    host.add_argument("--prefetch", action="store_true", help="model weight streaming (off: a CPU has none)")
    add_format_and_out(host, ("md", "csv", "json"))
    host.set_defaults(handler=run_host_check)
