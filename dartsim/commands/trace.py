"""`dartsim trace info`: what a trace holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from dartsim.commands.common import add_format_and_out, emit, positive_int
from dartsim.report import render


def run_info(args: argparse.Namespace) -> int:
    from dartsim.replay.workload import load_traces
    from dartsim.trace.summary import render_summary, summarize

    path = Path(args.trace)
    info = summarize(load_traces([path])[0], path)
    text = render.json_text(info) if args.format == "json" else render_summary(info)
    emit(text, args.out)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    import sys

    from dartsim.policies.dart.synth import synth_trace
    from dartsim.specs.model import load_model_spec
    from dartsim.trace.io import save_trace

    spec = load_model_spec(args.model)
    trace = synth_trace(
        spec, args.prompt_len, args.gen_len, args.retriggers, args.sparsity, args.allocation, args.seed
    )
    size = save_trace(trace, args.out)
    sys.stderr.write(
        f"wrote {args.out}: SYNTHETIC {spec.name}, {args.gen_len} tokens, "
        f"{args.retriggers} re-triggers, {size} bytes\n"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trace",
        help="inspect trace files",
        description=(
            "Traces are versioned files of plain tensors (loaded with weights_only=True: a "
            "trace never executes code). 'info' prints a summary."
        ),
    )
    trace_sub = parser.add_subparsers(dest="trace_command", metavar="ACTION", parser_class=type(parser))
    trace_sub.required = True
    info = trace_sub.add_parser(
        "info",
        help="model, tokens, mask epochs, re-triggers and their positions, keep ratio per layer, size",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Summarises one trace: its model and status, prompt and generated tokens, steps run\n"
            "with the FFN dense (dense-step fraction), mask epochs, drift checks (drift detection\n"
            "rate), re-triggers and the positions they fired at, recorded step times and the\n"
            "mean keep ratio of every layer. The file is validated first."
        ),
        epilog="examples:\n  dartsim trace info traces/two-topic-70.pt\n"
        "  dartsim trace info traces/two-topic-70.pt --format json",
    )
    info.add_argument("trace", metavar="TRACE.pt", help="a trace from dartsim record or trace synth")
    add_format_and_out(info, ("md", "json"))
    info.set_defaults(handler=run_info)
    synth = trace_sub.add_parser(
        "synth",
        help="make a synthetic trace (DART-allocated keep ratios, re-triggers spread over the run)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Writes a trace no model produced, marked SYNTHETIC: per-step scalars and one\n"
            "random mask per epoch with the kept counts of DART's allocation (or uniform), the\n"
            "re-triggers spread evenly. For replaying long or large runs without recording them."
        ),
        epilog="example:\n  dartsim trace synth --model llama-3.1-70b --gen-len 100000 --retriggers 100 "
        "--out long.pt",
    )
    synth.add_argument("--model", required=True, help="preset or config.json")
    synth.add_argument("--gen-len", type=positive_int, required=True, help="generated tokens")
    synth.add_argument("--prompt-len", type=positive_int, default=128, help="prompt tokens (default 128)")
    synth.add_argument("--retriggers", type=int, default=0, help="re-triggers spread evenly (default 0)")
    synth.add_argument("--sparsity", type=float, default=0.7, help="FFN sparsity (default 0.7)")
    synth.add_argument(
        "--allocation",
        choices=("dart", "uniform", "dense"),
        default="dart",
        help="keep ratios per layer: dart (depth-aware, default), uniform, or dense (no mask)",
    )
    synth.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    synth.add_argument("--out", required=True, metavar="FILE", help="trace file to write")
    synth.set_defaults(handler=run_synth)
