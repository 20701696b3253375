"""`dartsim replay` and `dartsim simulate`: the device model on traces or synthetic workloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dartsim.commands.common import (
    MAX_SIMULATED_SEQUENCES,
    add_format,
    add_hw,
    add_out_file,
    add_out_folder,
    add_precision,
    add_quiet,
    add_stack,
    add_tp,
    bounded_int,
    positive_int,
    precision_from,
)


def _device_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """The software stack, and choices the hardware and stack files make by default,
    overridable per run."""
    from dartsim.names import ALLREDUCE_ALGORITHMS, LAUNCH_MODES

    add_stack(parser, several)
    parser.add_argument(
        "--prefetch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream weights into on-chip memory ahead of compute (default: the hardware file's "
        "on_chip.weight_prefetch; GPUs: off, their L2 is a cache)",
    )
    parser.add_argument(
        "--launch",
        choices=LAUNCH_MODES,
        default=None,
        help="graph: the stack's graphs (CUDA graphs) cover decode steps; eager: the host issues "
        "every kernel (default: the stack's launch.mode)",
    )
    parser.add_argument(
        "--allreduce",
        choices=ALLREDUCE_ALGORITHMS,
        default=None,
        help="tensor-parallel all-reduce algorithm (default: the stack's allreduce.algorithm)",
    )


def _engine_options(parser: argparse.ArgumentParser) -> None:
    add_hw(parser)
    add_tp(parser)
    parser.add_argument(
        "--mask-apply",
        choices=("compact", "gather"),
        default="compact",
        help="compact: copy kept weights contiguously at each re-trigger (default); "
        "gather: read kept rows by index every step",
    )
    _device_options(parser)
    parser.add_argument(
        "--no-memoize", dest="memoize", action="store_false", help="simulate every step (slow; for checks)"
    )
    parser.add_argument(
        "--compare-dense", action="store_true", help="add the dense run side by side, with the speedup"
    )
    add_format(parser, ("md", "json", "csv"), "; --out DIR writes all of them")
    add_out_folder(
        parser, "write replay.json, summary.md, results.csv (tidy), layers.csv, retriggers.csv into DIR"
    )
    parser.add_argument(
        "--perfetto", metavar="FILE", help="write a Chrome/Perfetto timeline of --perfetto-steps"
    )
    parser.add_argument(
        "--perfetto-steps",
        default="0:3",
        metavar="A:B",
        help="inclusive step range for --perfetto (default 0:3)",
    )
    add_quiet(parser)
    add_precision(parser)


def _execute(args: argparse.Namespace, traces: list[Any], spec: Any, about: dict[str, Any]) -> int:
    from dartsim.commands.common import emit, stack_from
    from dartsim.engine.costing import StepCoster
    from dartsim.errors import UserError
    from dartsim.fileio import atomic_write_text
    from dartsim.replay.job import ReplayJob, prepare, run_prepared
    from dartsim.replay.steps import step_count
    from dartsim.report import render
    from dartsim.report.replay import layers_csv, perfetto_events, render_table, retriggers_csv, tidy_csv
    from dartsim.specs.hardware import load_hardware_spec

    hw = load_hardware_spec(args.hw)
    stack = stack_from(args.stack, hw)
    precision = precision_from(args)
    hw.tensor_flops_per_s(precision.gemm_compute, _format_option(precision.gemm_compute, args, "weight"))
    attention = precision.attention_compute(stack.attention.fp8_compute)
    hw.tensor_flops_per_s(attention, _format_option(attention, args, "kv"))
    job = ReplayJob(
        stack=stack,
        traces=tuple(traces),
        model=spec,
        hardware=hw,
        tp=args.tp,
        mask_apply=args.mask_apply,
        precision=precision,
        prefetch=args.prefetch,
        launch=args.launch,
        allreduce=args.allreduce,
        memoize=args.memoize,
        compare_dense=args.compare_dense,
        progress=not args.quiet,
    )
    prepared = prepare(job)
    result = run_prepared(prepared)
    if args.perfetto:
        steps = prepared.steps
        try:
            a, b = (int(x) for x in args.perfetto_steps.split(":"))
        except ValueError:
            raise UserError(f"--perfetto-steps must be A:B, got {args.perfetto_steps!r}") from None
        if not 0 <= a <= b < step_count(steps):
            raise UserError(f"--perfetto-steps {a}:{b} outside the {step_count(steps)} steps")
        coster = StepCoster(spec, hw, prepared.config)
        atomic_write_text(
            args.perfetto, render.json_text(perfetto_events(coster, steps, result.run.step_times_s, a, b))
        )
        sys.stderr.write(f"wrote {args.perfetto}\n")
    texts = {
        "json": render.json_text(result.contract(about)),
        "md": render_table(result, about),
        "csv": tidy_csv(result),
    }
    if args.out:
        folder = Path(args.out)
        from dartsim.fileio import write_file_set

        write_file_set(
            folder,
            {
                "replay.json": texts["json"],
                "summary.md": texts["md"],
                "results.csv": texts["csv"],
                "layers.csv": layers_csv(result),
                "retriggers.csv": retriggers_csv(result),
            },
        )
        sys.stderr.write(f"wrote {folder}/replay.json, summary.md, results.csv, layers.csv, retriggers.csv\n")
    else:
        emit(texts[args.format], None)
    return 0


def _format_option(dtype: Any, args: argparse.Namespace, role: str) -> str:
    """The option that asked for a compute format (for an error naming it)."""
    if role == "kv" and args.kv_dtype == dtype.name:
        return f"--kv-dtype {args.kv_dtype}"
    if args.weight_dtype == dtype.name:
        return f"--weight-dtype {args.weight_dtype}"
    return f"--act-dtype {args.act_dtype}"


def run_replay(args: argparse.Namespace) -> int:
    from dartsim.replay.job import target_model
    from dartsim.replay.workload import describe_traces, load_traces

    traces = load_traces(args.traces)
    spec = target_model(traces, args.model)
    if not all(t.complete for t in traces):
        unfinished = ", ".join(str(p) for p, t in zip(args.traces, traces, strict=True) if not t.complete)
        sys.stderr.write(f"note: replaying incomplete trace(s) {unfinished}: the recording was cut short\n")
    return _execute(args, traces, spec, describe_traces(args.traces, traces))


def run_simulate(args: argparse.Namespace) -> int:
    from dartsim.policies.dart.synth import synth_trace
    from dartsim.specs.model import load_model_spec

    spec = load_model_spec(args.model)
    allocation = "dense" if args.sparsity == 0 else args.allocation
    traces = [
        synth_trace(
            spec,
            args.prompt_len,
            args.gen_len,
            args.retriggers,
            args.sparsity,
            allocation,
            seed=args.seed + i,
        )
        for i in range(args.batch)
    ]
    about = {
        "synthetic": True,
        "workload": {
            "prompt_len": args.prompt_len,
            "gen_len": args.gen_len,
            "sparsity": args.sparsity,
            "allocation": allocation,
            "retriggers": args.retriggers,
        },
    }
    return _execute(args, traces, spec, about)


def run_sweep(args: argparse.Namespace) -> int:
    from dartsim.commands.common import emit, split_list
    from dartsim.errors import UserError
    from dartsim.replay.capacity import parse_tp
    from dartsim.replay.job import target_model
    from dartsim.replay.workload import load_traces
    from dartsim.report.sweep import render_sweep
    from dartsim.study.sweep import sweep

    studies = [p for p in args.traces if str(p).endswith((".yaml", ".yml"))]
    if studies:
        raise UserError(f"{studies[0]} is a study file: run it with dartsim study {studies[0]} --out DIR")
    traces = load_traces(args.traces)
    spec = target_model(traces, args.model)
    tps = split_list(args.tp, "--tp")
    for tp in tps:
        if tp != "auto":
            parse_tp(tp)  # a malformed degree is a user error, not a point that does not fit
    stacks = split_list(args.stack, "--stack") if args.stack else [None]
    from dartsim.specs.stack import load_stack_spec

    for name in stacks:
        if name is not None:
            load_stack_spec(name)  # a bad stack is an error before any point runs
    modes = split_list(args.mask_apply, "--mask-apply")
    for mode in modes:
        if mode not in ("compact", "gather"):
            raise UserError(f"--mask-apply: expected compact and/or gather, got {mode!r}")
    rows = sweep(
        traces,
        spec,
        split_list(args.hw, "--hw"),
        tps,
        modes,
        precision_from(args),
        args.prefetch,
        progress=not args.quiet,
        launch=args.launch,
        allreduce=args.allreduce,
        stacks=stacks,
    )
    names = ", ".join(Path(p).name for p in args.traces)
    title = f"Sweep: {names} as {spec.name}"
    emit(render_sweep(rows, args.format, title), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay",
        help="replay recorded traces on a hardware model (per-layer bytes, FLOPs, time; TTFT, TPOT)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Replays DART traces on the discrete-event device model: every step's kernels from\n"
            "the workload model, DRAM/HBM, tensor and vector units, on-chip memory and network,\n"
            "chip-to-chip links for tensor parallelism, and the work of every mask build.\n"
            "Several traces form one batch: each step fetches the union of their kept neurons.\n"
            "With --model the traces are retargeted (keep ratios mapped by normalised depth)."
        ),
        epilog=(
            "examples:\n"
            "  dartsim replay traces/two-topic-70.pt --hw l40s\n"
            "  dartsim replay traces/two-topic-70.pt --hw l40s --model llama-3.1-70b --tp auto \\\n"
            "      --compare-dense\n"
            "  dartsim replay traces/*-50.pt --hw h100-sxm --model llama-3.1-8b --format json\n"
            "  dartsim replay t.pt --hw l40s --perfetto timeline.json --perfetto-steps 0:2"
        ),
    )
    replay.add_argument("traces", nargs="+", metavar="TRACE.pt", help="traces; several form one batch")
    replay.add_argument(
        "--model", help="retarget to a preset or config.json (default: the trace's own model)"
    )
    _engine_options(replay)
    replay.set_defaults(handler=run_replay)

    sim = sub.add_parser(
        "simulate",
        help="the same engine on a synthetic workload (no trace needed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Dense, uniform or DART-allocated synthetic sparsity on any model, without a\n"
            "recording: each sequence of the batch is a synthetic trace (keep ratios from\n"
            "DART's allocation or uniform, re-triggers spread evenly). The output follows the\n"
            "replay contract (same table, JSON, CSV and --out folder)."
        ),
        epilog=(
            "examples:\n"
            "  dartsim simulate --model llama-3.1-8b --hw l40s --sparsity 0.7 --compare-dense\n"
            "  dartsim simulate --model llama-3.1-70b --hw h100-sxm --tp 4 --batch 8 \\\n"
            "      --prompt-len 1024 --gen-len 512 --sparsity 0.5 --retriggers 2 --format json"
        ),
    )
    sim.add_argument("--model", required=True, help="preset name or config.json (see dartsim models)")
    sim.add_argument(
        "--batch",
        type=bounded_int(
            MAX_SIMULATED_SEQUENCES, "one synthetic trace each; their mask union is dense by then"
        ),
        default=1,
        help=f"sequences in the batch (default 1, at most {MAX_SIMULATED_SEQUENCES})",
    )
    sim.add_argument("--prompt-len", type=positive_int, default=128, help="prompt tokens (default 128)")
    sim.add_argument("--gen-len", type=positive_int, default=256, help="generated tokens (default 256)")
    sim.add_argument("--sparsity", type=float, default=0.0, help="FFN sparsity (default 0: dense)")
    sim.add_argument(
        "--allocation",
        choices=("dart", "uniform"),
        default="dart",
        help="how sparsity is spread over layers (default dart: the paper's depth-aware allocation)",
    )
    sim.add_argument(
        "--retriggers", type=int, default=0, help="re-triggers spread evenly over the run (default 0)"
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of the synthetic masks (default 0)")
    _engine_options(sim)
    sim.set_defaults(handler=run_simulate)

    sw = sub.add_parser(
        "sweep",
        help="an architecture study: traces over a grid of hardware, TP degrees and mask modes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Replays the same traces (one batch) for every combination of --hw, --tp and\n"
            "--mask-apply, each beside its own dense baseline, one row per point. TP degrees\n"
            "whose shard does not fit a device are skipped (and said so on stderr)."
        ),
        epilog=(
            "example:\n"
            "  dartsim sweep traces/two-topic-70.pt --model llama-3.1-70b \\\n"
            "      --hw l40s,h100-sxm,h200,mi300x --tp auto,2,4 --mask-apply compact,gather"
        ),
    )
    sw.add_argument("traces", nargs="+", metavar="TRACE.pt", help="traces; several form one batch")
    sw.add_argument("--model", help="retarget to a preset or config.json (default: the trace's own model)")
    add_hw(sw, several=True)
    add_tp(sw, several=True)
    sw.add_argument("--mask-apply", default="compact,gather", help="compact and/or gather (default both)")
    _device_options(sw, several=True)
    add_format(sw, ("md", "csv", "json"))
    add_out_file(sw)
    add_quiet(sw)
    add_precision(sw)
    sw.set_defaults(handler=run_sweep)
