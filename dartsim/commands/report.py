"""`dartsim report`: evidence from recorded traces (Figure 5, re-trigger rates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dartsim.commands.common import add_format_and_out, add_precision, add_stack, add_tp, emit, fraction
from dartsim.commands.report_studies import register_studies


def run_figure5(args: argparse.Namespace) -> int:
    from dartsim.fileio import atomic_write_bytes
    from dartsim.report.drift_report import figure5_png
    from dartsim.trace.io import load_trace

    curves = [
        ("dense", load_trace(args.dense)),
        ("pruned (first mask only)", load_trace(args.static)),
        ("pruned with tracing (DART)", load_trace(args.dart)),
    ]
    model = curves[2][1].model.name
    sparsity = (curves[2][1].dart or {}).get("sparsity")
    if sparsity is None:
        from dartsim.errors import UserError

        raise UserError(f"{args.dart}: not a DART trace (recorded under another policy)")
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
    from dartsim.replay.job import own_model
    from dartsim.report.host_check import render_rows
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.trace.io import load_trace
    from dartsim.validate.recorded import compare

    hw = load_hardware_spec(args.hw)
    rows = []
    for name in args.traces:
        path = Path(name)
        trace = load_trace(path)
        rows.append(compare(path, trace, own_model(trace), hw, args.prefetch))
    emit(render_rows(rows, hw, args.format), args.out)
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    from dartsim.commands.common import precision_from, split_list, stack_from
    from dartsim.replay.per_model import replay_model
    from dartsim.replay.workload import load_traces
    from dartsim.report.bundle import bundle, write_bundle
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec

    traces = load_traces(args.traces)
    hw = load_hardware_spec(args.hw)
    stack = stack_from(args.stack, hw)
    precision = precision_from(args)
    hw.tensor_flops_per_s(precision.gemm_compute, f"--weight-dtype {args.weight_dtype}")
    hw.tensor_flops_per_s(
        precision.attention_compute(stack.attention.fp8_compute), f"--kv-dtype {args.kv_dtype}"
    )
    specs = (
        [load_model_spec(name) for name in split_list(args.models, "--models")]
        if args.models
        else [traces[0].model.spec(str(args.traces[0]))]
    )
    shown = [spec.name for spec in specs]
    twice = sorted({name for name in shown if shown.count(name) > 1})
    if twice:
        from dartsim.errors import UserError

        raise UserError(
            f"--models: {', '.join(twice)} named twice (two configs with one display name would overwrite "
            "each other's plots and rows): give each model once, or rename one config's name"
        )
    runs = []
    for spec in specs:
        if not args.quiet:
            sys.stderr.write(
                f"replaying as {spec.name} on {hw.name} under {stack.label} (as recorded, and dense)\n"
            )
        runs.append(replay_model(traces, spec, hw, args.tp, precision, stack))
    names = [Path(p).name for p in args.traces]
    files = bundle(names, traces, runs, hw, precision)
    write_bundle(Path(args.out), files)
    sys.stderr.write(f"wrote {args.out}/: {', '.join(sorted(files))}\n")
    return 0


def run_mechanisms(args: argparse.Namespace) -> int:
    from dartsim.commands.common import precision_from, split_list, stack_from
    from dartsim.replay.capacity import choose_tp
    from dartsim.report.mechanisms import render_report
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.workload import check_tensor_parallel

    spec = load_model_spec(args.model)
    hw = load_hardware_spec(args.hw)
    precision = precision_from(args)
    hw.tensor_flops_per_s(precision.gemm_compute, f"--weight-dtype {args.weight_dtype}")
    tps = []
    for text in split_list(args.tp, "--tp"):
        tp = choose_tp(spec, hw, precision, text, 0, stack_from(None, hw).memory.reserve_fraction)
        check_tensor_parallel(spec, tp)
        tps.append(tp)
    emit(render_report(spec, hw, sorted(set(tps)), args.keep, precision), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
        epilog="example:\n  dartsim report figure5 --dense traces/two-topic-dense.pt "
        "--static traces/two-topic-static-70.pt --dart traces/two-topic-70.pt --out figure5.png",
    )
    fig.add_argument("--dense", required=True, metavar="TRACE", help="trace recorded with --mode dense")
    fig.add_argument("--static", required=True, metavar="TRACE", help="trace recorded with --mode static")
    fig.add_argument("--dart", required=True, metavar="TRACE", help="trace recorded with --mode dart")
    fig.add_argument("--out", required=True, metavar="FILE.png", help="PNG to write (deterministic bytes)")
    fig.set_defaults(handler=run_figure5)
    rates = report_sub.add_parser(
        "retriggers",
        help="re-triggers per 1k tokens, their positions and dense steps, per trace",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "One row per trace: model, sparsity, mode, generated tokens, re-triggers (count, per\n"
            "1k tokens, and the positions they fired at), steps run with the FFN dense and the\n"
            "mean keep ratio."
        ),
        epilog="examples:\n  dartsim report retriggers traces/*.pt\n"
        "  dartsim report retriggers traces/*.pt --out reports/retriggers.md",
    )
    rates.add_argument("traces", nargs="+", metavar="TRACE", help="trace files")
    add_format_and_out(rates, ("md", "csv", "json"))
    rates.set_defaults(handler=run_retriggers)
    host = report_sub.add_parser(
        "host-check",
        help="predicted vs measured step times for traces recorded on this host",
        description=(
            "Replays traces with a preset calibrated on the recording machine "
            "(dartsim calibrate --device cpu) and compares step times with those measured."
        ),
        epilog="example:\n  dartsim report host-check traces/two-topic-70.pt traces/two-topic-dense.pt",
    )
    host.add_argument("traces", nargs="+", metavar="TRACE", help="traces recorded on this machine")
    host.add_argument("--hw", default="cpu-host", help="calibrated preset or YAML (default cpu-host)")
    host.add_argument("--prefetch", action="store_true", help="model weight streaming (off: a CPU has none)")
    add_format_and_out(host, ("md", "csv", "json"))
    host.set_defaults(handler=run_host_check)
    run = report_sub.add_parser(
        "run",
        help="one folder for traces: summary, tidy CSV and plots of the attention/MLP rebalancing "
        "(also 'dartsim report TRACE...')",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Replays the traces (one batch) on one hardware preset as each of --models, as\n"
            "recorded and dense, and writes one folder: summary.md (TPOT, speedup, the\n"
            "shares of attention, MLP and other in bytes and time, dense beside DART),\n"
            "results.csv (every figure as tidy rows) and plots: the rebalancing, a roofline\n"
            "of every kernel of a masked decode step, per-layer bytes and time, step time\n"
            "over the run, kept fraction per layer and epoch, drift similarity."
        ),
        epilog="examples:\n  dartsim report traces/two-topic-70.pt --hw l40s "
        "--models llama-3.1-8b,llama-3.1-70b "
        "--out rep\n  dartsim report run traces/*-70.pt --hw h100-sxm --out rep-h100",
    )
    run.add_argument("traces", nargs="+", metavar="TRACE", help="traces; several form one batch")
    run.add_argument("--hw", required=True, metavar="NAME|FILE", help="hardware preset or YAML file")
    run.add_argument(
        "--models", metavar="A,B", help="models to replay as (presets or config.json; default the trace's)"
    )
    add_tp(run)
    add_stack(run)
    run.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    add_precision(run)
    run.set_defaults(handler=run_bundle, output_folders=("out",))
    mech = report_sub.add_parser(
        "mechanisms",
        help="what each device-model mechanism costs a decode step, and DART's speedup under other stacks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Simulates a batch-1 decode step with every mechanism, then with one at a time made\n"
            "ideal (launch, latency, collectives, compute efficiency, memory efficiency), and\n"
            "compares a dense step with a DART-masked one under other launch and collective\n"
            "assumptions (CUDA graphs, PyTorch eager, NCCL-like all-reduce, ring)."
        ),
        epilog="example:\n  dartsim report mechanisms --model llama-3.1-70b --hw h100-sxm --tp 1,4 --keep 0.3"
        "\n  dartsim report mechanisms --model llama-3.1-8b --hw l40s --tp 1 --out mech-8b.md",
    )
    register_studies(report_sub)
    from dartsim.commands.report_serve import register_report

    register_report(report_sub)
    mech.add_argument(
        "--model", default="llama-3.1-70b", help="model preset or config.json (default llama-3.1-70b)"
    )
    mech.add_argument("--hw", default="h100-sxm", help="hardware preset or YAML (default h100-sxm)")
    add_tp(mech, several=True)
    mech.add_argument("--keep", type=fraction, default=0.3, help="kept fraction of FFN neurons (default 0.3)")
    mech.add_argument("--out", metavar="FILE", help="write atomically to FILE")
    add_precision(mech)
    mech.set_defaults(handler=run_mechanisms)
