"""`dartsim report`: evidence from recorded traces (Figure 5, re-trigger rates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dartsim.cli import emit
from dartsim.commands.common import add_format_and_out, add_precision, fraction, positive_int


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
    sparsity = curves[2][1].get("dart", {}).get("sparsity")
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


def run_bundle(args: argparse.Namespace) -> int:
    from dartsim.commands.common import precision_from, split_list
    from dartsim.engine.costing import ReplayConfig
    from dartsim.report.bundle import bundle, replay_model, write_bundle
    from dartsim.specs.hardware import load_hardware_spec
    from dartsim.specs.model import load_model_spec
    from dartsim.trace import load_trace
    from dartsim.trace.schema import model_spec_of

    traces = [load_trace(p) for p in args.traces]
    hw = load_hardware_spec(args.hw)
    precision = precision_from(args)
    hw.tensor_flops_per_s(precision.gemm_compute, f"--weight-dtype {args.weight_dtype}")
    hw.tensor_flops_per_s(precision.attention_compute, f"--kv-dtype {args.kv_dtype}")
    specs = (
        [load_model_spec(name) for name in split_list(args.models, "--models")]
        if args.models
        else [model_spec_of(traces[0], str(args.traces[0]))]
    )
    config = ReplayConfig(precision=precision)
    runs = []
    for spec in specs:
        if not args.quiet:
            sys.stderr.write(f"replaying as {spec.name} on {hw.name} (as recorded, and dense)\n")
        runs.append(replay_model(traces, spec, hw, args.tp, config))
    names = [Path(p).name for p in args.traces]
    files = bundle(names, traces, runs, hw, precision)
    write_bundle(Path(args.out), files)
    sys.stderr.write(f"wrote {args.out}/: {', '.join(sorted(files))}\n")
    return 0


def run_mechanisms(args: argparse.Namespace) -> int:
    from dartsim.commands.common import precision_from, split_list
    from dartsim.errors import UserError
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
        try:
            tp = int(text)
        except ValueError:
            raise UserError(f"--tp: expected positive integers, got {text!r}") from None
        if tp <= 0:
            raise UserError(f"--tp: expected positive integers, got {tp}")
        check_tensor_parallel(spec, tp)
        tps.append(tp)
    emit(render_report(spec, hw, tps, args.keep, precision), args.out)
    return 0


def _load_study(path: str, study: str = "detector") -> dict[str, object]:
    import json

    from dartsim.errors import UserError
    from dartsim.fileio import read_text

    try:
        payload = json.loads(read_text(Path(path), "study results"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON: {exc.msg}") from None
    if not isinstance(payload, dict) or payload.get("study") != study or "rows" not in payload:
        raise UserError(f"{path}: not the results of a {study} study")
    return payload


def _resumable(args: argparse.Namespace, model: str, prompts: list[str]) -> dict[str, dict[str, object]]:
    """Rows of an earlier run of the same study saved in --json (none if the file is absent)."""
    from dartsim.errors import UserError

    if not Path(args.json).exists():
        return {}
    payload = _load_study(args.json)
    same = (payload.get("model"), payload.get("tokens_per_run"), payload.get("prompts"))
    if same != (model, args.tokens, prompts):
        raise UserError(
            f"{args.json}: saved for another study (model, tokens, prompts {same}); "
            "remove it or drop --resume"
        )
    return {row["label"]: row for row in payload["rows"]}  # type: ignore[index,union-attr]


def run_detector(args: argparse.Namespace) -> int:
    from dartsim.commands.common import split_list
    from dartsim.errors import UserError
    from dartsim.report.detector import render
    from dartsim.report.render import json_text

    if args.from_json is not None:
        emit(render(_load_study(args.from_json)), args.out)
        return 0

    from dartsim.dart.hf import load_for_recording
    from dartsim.dart.prompts import SAMPLE_PROMPTS
    from dartsim.fileio import atomic_write_text
    from dartsim.study.detector import GRID, QUICK_GRID, run_study, study_payload

    names = split_list(args.prompts, "--prompts")
    unknown = [n for n in names if n not in SAMPLE_PROMPTS]
    if unknown:
        raise UserError(f"--prompts: unknown prompt {unknown[0]!r}; valid: {', '.join(SAMPLE_PROMPTS)}")
    if args.json is not None and Path(args.json).resolve() == Path(args.out or "-").resolve():
        raise UserError("--json and --out must be different files")
    if args.resume and args.json is None:
        raise UserError("--resume continues the study saved in --json FILE; give --json")
    loaded = load_for_recording(args.model, "cpu", 0)
    grid = QUICK_GRID if args.quick else GRID

    def say(message: str) -> None:
        if not args.quiet:
            sys.stderr.write(message + "\n")

    prompts = {n: SAMPLE_PROMPTS[n] for n in names}
    done = _resumable(args, loaded.spec.name, names) if args.resume else None

    def checkpoint(rows: list[dict[str, object]]) -> None:
        if args.json is not None:
            partial = study_payload(rows, loaded.spec.name, args.tokens, names, complete=False)
            atomic_write_text(args.json, json_text(partial))

    rows = run_study(loaded, prompts, grid, args.tokens, say, done, checkpoint)
    payload = study_payload(rows, loaded.spec.name, args.tokens, names)
    if args.json is not None:
        atomic_write_text(args.json, json_text(payload))
    emit(render(payload), args.out)
    return 0


def pareto_png(payload: dict[str, object], panels: list[str]) -> bytes:
    """reports/policies-pareto.png from a policies payload: one series per policy (its
    settings at every sparsity), one panel per target."""
    from dartsim.report.plots import pareto

    groups: dict[str, list[list[tuple[float, float]]]] = {}
    for row in payload["rows"]:  # type: ignore[attr-defined]
        name = row["label"].rsplit(" ", 1)[0] if row["label"].endswith("%") else row["label"]
        cells = groups.setdefault(name, [[] for _ in panels])
        for i, key in enumerate(panels):
            cells[i].append((row["costs"][key]["speedup"], row["quality"]["top1_agreement"]))
    return pareto(list(groups.items()), panels)


def run_policies(args: argparse.Namespace) -> int:
    from dartsim.commands.common import split_list
    from dartsim.errors import UserError
    from dartsim.fileio import atomic_write_bytes, atomic_write_text
    from dartsim.report.policies import render
    from dartsim.report.render import json_text

    targets = [tuple(t.split("@", 1)) for t in split_list(args.targets, "--targets")]
    if any(len(t) != 2 or not t[0] or not t[1] for t in targets):
        raise UserError(f"--targets takes MODEL@HW pairs, got {args.targets!r}")
    if args.from_json is not None:
        payload = _load_study(args.from_json, "policies")
    else:
        from dartsim.dart.hf import load_for_recording
        from dartsim.policies.quality import eval_items
        from dartsim.specs.hardware import load_hardware_spec
        from dartsim.specs.model import load_model_spec
        from dartsim.study.policies import run_policies_study, settings

        for model, hw in targets:  # unknown names fail before an hour of recording
            load_model_spec(model)
            load_hardware_spec(hw)
        try:
            sparsities = [float(x) for x in split_list(args.sparsities, "--sparsities")]
        except ValueError:
            raise UserError(f"--sparsities takes numbers in (0, 1), got {args.sparsities!r}") from None
        if any(not 0 < x < 1 for x in sparsities):
            raise UserError(f"--sparsities must lie in (0, 1), got {args.sparsities!r}")
        loaded = load_for_recording(args.model, "cpu", 0)
        items = eval_items(loaded, args.items_per_category, args.prompt_tokens, args.tokens)
        if not items:
            raise UserError("no evaluation passage is long enough for --prompt-tokens plus --tokens")

        def say(message: str) -> None:
            if not args.quiet:
                sys.stderr.write(message + "\n")

        chosen = settings(sparsities)
        if args.policies:
            wanted = split_list(args.policies, "--policies")
            chosen = [s for s in chosen if s.policy in wanted or s.label == "dense"]
        payload = run_policies_study(loaded, chosen, items, targets, say)  # type: ignore[arg-type]
        if args.json is not None:
            atomic_write_text(args.json, json_text(payload))
    if args.plot is not None:
        atomic_write_bytes(args.plot, pareto_png(payload, list(payload["targets"])))  # type: ignore[arg-type]
    emit(render(payload), args.out)
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
    run.add_argument("--tp", default="auto", metavar="N|auto", help="tensor-parallel degree (default auto)")
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
    detector = report_sub.add_parser(
        "detector",
        help="the drift-detector study: DART under many detector settings, with its quality cost",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Records DART on the bundled model (or --model) under a grid of detector settings\n"
            "(delta, c0, T, tau, sparsity, prompt in the reference, the first mask only, the\n"
            "authors' code's values) on the sample prompts, and measures each run against the\n"
            "dense model: drift detection rate, re-triggers per 1k tokens, dense-step fraction,\n"
            "top-1 agreement and KL. Judges each setting by criteria fixed in advance\n"
            "(dartsim/study/criteria.py). The full grid takes about an hour on two CPU cores."
        ),
        epilog="examples:\n  dartsim report detector --json reports/detector.json --out reports/detector.md"
        "\n  dartsim report detector --quick --tokens 24 --prompts two-topic --out smoke.md"
        "\n  dartsim report detector --from-json reports/detector.json --out reports/detector.md",
    )
    detector.add_argument(
        "--prompts",
        default="two-topic,explain-and-contrast,compare-and-assess-impact,apply-to-sector-with-policy,"
        "trace-development-and-ethics",
        help="comma-separated sample prompt names (default: those of the shipped traces)",
    )
    detector.add_argument("--tokens", type=positive_int, default=300, help="tokens per run (default 300)")
    detector.add_argument("--model", help="model as for dartsim record (default: the bundled SmolLM2)")
    detector.add_argument("--quick", action="store_true", help="two short settings (a smoke test)")
    detector.add_argument(
        "--json", metavar="FILE", help="also write the raw results as JSON (updated after every setting)"
    )
    detector.add_argument(
        "--resume",
        action="store_true",
        help="reuse the settings already saved in --json (after an interrupt)",
    )
    detector.add_argument("--from-json", metavar="FILE", help="render saved results instead of running")
    detector.add_argument("--quiet", action="store_true", help="no progress lines")
    detector.add_argument("--out", metavar="FILE", help="write atomically to FILE")
    detector.set_defaults(handler=run_detector)
    pol = report_sub.add_parser(
        "policies",
        help="every sparsity policy on the real model: kept fraction, quality, and replayed cost",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Records every policy (dense, static, dart, dejavu and its oracle, wanda, 2:4, dsgp,\n"
            "kgds) on the bundled model at each sparsity, teacher-forced on the shipped\n"
            "evaluation text, measures quality against the dense model (perplexity, top-1\n"
            "agreement, KL), and replays every trace on each MODEL@HW target for DRAM bytes,\n"
            "time per token and speedup. The full run takes about 20 minutes on two CPU cores."
        ),
        epilog="examples:\n  dartsim report policies --json reports/policies.json "
        "--plot reports/policies-pareto.png --out reports/policies.md"
        "\n  dartsim report policies --from-json reports/policies.json --out reports/policies.md"
        "\n  dartsim report policies --policies static,wanda --sparsities 0.5 --items-per-category 1 "
        "--tokens 16 --targets llama-3.1-8b@l40s --out smoke.md",
    )
    pol.add_argument("--sparsities", default="0.3,0.5,0.7", help="comma-separated (default 0.3,0.5,0.7)")
    pol.add_argument("--policies", help="comma-separated policies to run (default: all; dense always runs)")
    pol.add_argument(
        "--targets",
        default="llama-3.1-8b@l40s,llama-3.1-8b@h100-sxm,llama-3.1-70b@l40s,llama-3.1-70b@h100-sxm",
        help="comma-separated MODEL@HW replay targets (default: 8B and 70B on L40S and H100)",
    )
    pol.add_argument(
        "--items-per-category",
        type=positive_int,
        default=2,
        help="evaluation passages per category (default 2)",
    )
    pol.add_argument("--prompt-tokens", type=positive_int, default=64, help="prompt tokens (default 64)")
    pol.add_argument("--tokens", type=positive_int, default=128, help="continuation tokens (default 128)")
    pol.add_argument("--model", help="model as for dartsim record (default: the bundled SmolLM2)")
    pol.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    pol.add_argument("--from-json", metavar="FILE", help="render saved results instead of running")
    pol.add_argument("--plot", metavar="FILE", help="write the quality-vs-speedup Pareto plot (PNG)")
    pol.add_argument("--quiet", action="store_true", help="no progress lines")
    pol.add_argument("--out", metavar="FILE", help="write the markdown atomically to FILE")
    pol.set_defaults(handler=run_policies)
    mech.add_argument(
        "--model", default="llama-3.1-70b", help="model preset or config.json (default llama-3.1-70b)"
    )
    mech.add_argument("--hw", default="h100-sxm", help="hardware preset or YAML (default h100-sxm)")
    mech.add_argument("--tp", default="1,4", help="comma-separated tensor-parallel degrees (default 1,4)")
    mech.add_argument("--keep", type=fraction, default=0.3, help="kept fraction of FFN neurons (default 0.3)")
    mech.add_argument("--out", metavar="FILE", help="write atomically to FILE")
    add_precision(mech)
    mech.set_defaults(handler=run_mechanisms)
