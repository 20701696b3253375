"""`dartsim report detector` and `dartsim report policies`: the report subcommands backed
by a study (many recordings on the real model, measured against the dense model), each
able to re-render saved results with `--from-json`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dartsim.commands.common import emit, positive_int
from dartsim.study.policies import DEFAULT_SPARSITIES, DEFAULT_TARGETS


def _load_study(path: str, study: str = "detector") -> dict[str, Any]:
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
    if same != (model, args.gen_len, prompts):
        raise UserError(
            f"{args.json}: saved for another study (model, tokens, prompts {same}); "
            "remove it or drop --resume"
        )
    return {row["label"]: row for row in payload["rows"]}


def run_detector(args: argparse.Namespace) -> int:
    from dartsim.commands.common import split_list
    from dartsim.errors import UserError
    from dartsim.report.detector import render
    from dartsim.report.render import json_text

    if args.from_json is not None:
        emit(render(_load_study(args.from_json)), args.out)
        return 0

    from dartsim.fileio import atomic_write_text
    from dartsim.record.model import load_for_recording
    from dartsim.record.prompts import SAMPLE_PROMPTS
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
            partial = study_payload(rows, loaded.spec.name, args.gen_len, names, complete=False)
            atomic_write_text(args.json, json_text(partial))

    rows = run_study(loaded, prompts, grid, args.gen_len, say, done, checkpoint)
    payload = study_payload(rows, loaded.spec.name, args.gen_len, names)
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
        from dartsim.record.model import load_for_recording
        from dartsim.specs.hardware import load_hardware_spec
        from dartsim.specs.model import load_model_spec
        from dartsim.study.policies import run_policies_study, settings
        from dartsim.study.quality import eval_items

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
        items = eval_items(loaded, args.items_per_category, args.prompt_len, args.gen_len)
        if not items:
            raise UserError("no evaluation passage is long enough for --prompt-len plus --gen-len")

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
        atomic_write_bytes(args.plot, pareto_png(payload, list(payload["targets"])))
    emit(render(payload), args.out)
    return 0


def register_studies(report_sub: argparse._SubParsersAction) -> None:
    """Add `detector` and `policies` under `dartsim report`."""
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
        "\n  dartsim report detector --quick --gen-len 24 --prompts two-topic --out smoke.md"
        "\n  dartsim report detector --from-json reports/detector.json --out reports/detector.md",
    )
    detector.add_argument(
        "--prompts",
        default="two-topic,explain-and-contrast,compare-and-assess-impact,apply-to-sector-with-policy,"
        "trace-development-and-ethics",
        help="comma-separated sample prompt names (default: those of the shipped traces)",
    )
    detector.add_argument(
        "--gen-len", type=positive_int, default=300, help="tokens generated per run (default 300)"
    )
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
        "--gen-len 16 --targets llama-3.1-8b@l40s --out smoke.md",
    )
    sparsities = ",".join(f"{x:g}" for x in DEFAULT_SPARSITIES)
    pol.add_argument("--sparsities", default=sparsities, help=f"comma-separated (default {sparsities})")
    pol.add_argument("--policies", help="comma-separated policies to run (default: all; dense always runs)")
    pol.add_argument(
        "--targets",
        default=",".join(f"{model}@{hw}" for model, hw in DEFAULT_TARGETS),
        help="comma-separated MODEL@HW replay targets (default: 8B and 70B on L40S and H100)",
    )
    pol.add_argument(
        "--items-per-category",
        type=positive_int,
        default=2,
        help="evaluation passages per category (default 2)",
    )
    pol.add_argument("--prompt-len", type=positive_int, default=64, help="prompt tokens (default 64)")
    pol.add_argument(
        "--gen-len", type=positive_int, default=128, help="teacher-forced continuation tokens (default 128)"
    )
    pol.add_argument("--model", help="model as for dartsim record (default: the bundled SmolLM2)")
    pol.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    pol.add_argument("--from-json", metavar="FILE", help="render saved results instead of running")
    pol.add_argument("--plot", metavar="FILE", help="write the quality-vs-speedup Pareto plot (PNG)")
    pol.add_argument("--quiet", action="store_true", help="no progress lines")
    pol.add_argument("--out", metavar="FILE", help="write the markdown atomically to FILE")
    pol.set_defaults(handler=run_policies)
