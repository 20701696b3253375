"""`dartsim record`: run a sparsity policy (DART by default) on a model and write a trace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dartsim.commands.common import positive_int
from dartsim.errors import UserError
from dartsim.fileio import check_folder_writable, check_writable
from dartsim.policies import policies_help, policy_names
from dartsim.policies._registry import (
    DEFAULT_CORE_FRACTION,
    DEFAULT_HEAD_SPARSITY,
    DEFAULT_RANK,
    UNSTRUCTURED_FORMATS,
)
from dartsim.policies.dart.params import (
    MASK_APPLY,
    PAPER_ALPHA_E,
    PAPER_ALPHA_L,
    PAPER_BETA_E,
    PAPER_BETA_L,
    PAPER_DELTA,
    PAPER_SPARSITY,
    PRESETS,
    PUBLISHED_SPARSITY,
    RANKINGS,
    RECORD_MODES,
    DartParams,
)
from dartsim.record.prompts import TWO_TOPIC_PROMPT, read_prompt_file
from dartsim.signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_as_interrupt

DEFAULTS = DartParams()
POLICY_OPTIONS = (
    "sparsity", "tau", "reference_tokens", "delta", "c0", "alpha_e", "alpha_l", "beta_e", "beta_l",
    "p_min", "p_max", "prompt_in_reference", "masking_step", "ranking", "fix_published_defects",
    "preset", "mode", "mask_apply", "head_sparsity", "oracle", "rank", "core_fraction", "weight_format",
)  # fmt: skip
"""Options that belong to one policy or another (the rest apply to every recording)."""


def _policy_options(args: argparse.Namespace, parser_defaults: dict[str, Any]) -> dict[str, Any]:
    """The policy options given on the command line (None for those left at their default),
    refusing one the chosen policy does not take."""
    from dartsim.policies import get_policy

    policy = get_policy(args.policy)
    given: dict[str, Any] = {}
    for name in POLICY_OPTIONS:
        value = getattr(args, name)
        if value is None or value == parser_defaults.get(name):
            continue
        if name not in policy.options:
            flag = "--" + {"rank": "predictor-rank"}.get(name, name).replace("_", "-")
            raise UserError(f"{flag} does not apply to --policy {policy.name}")
        given[name] = value
    return given


def _first_mask_after(params: DartParams) -> str:
    if params.variant == "published-code":
        return f"forward {params.masking_step - 1}"
    if params.prompt_in_reference:
        return "the prompt"
    return f"{params.reference_tokens} dense tokens"


def _first_mask_option(params: DartParams) -> str:
    return "--masking-step" if params.variant == "published-code" else "--reference-tokens"


def _prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt is not None and args.prompt_file is not None:
        raise UserError("give --prompt or --prompt-file, not both")
    if args.prompt_file is not None:
        return read_prompt_file(Path(args.prompt_file))
    if args.prompt is not None:
        if not args.prompt.strip():
            raise UserError("--prompt is empty")
        return [args.prompt]
    return [TWO_TOPIC_PROMPT]


def _targets(args: argparse.Namespace, prompts: list[str]) -> list[Path]:
    out = Path(args.out)
    if len(prompts) > 1:
        check_folder_writable(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{out}: cannot create the folder: {exc.strerror or exc}") from None
        return [out / f"prompt-{i:03d}.pt" for i in range(len(prompts))]
    if out.is_dir():
        raise UserError(f"{out}: is a folder; --out needs a file name for one prompt")
    check_writable(out)
    return [out]


def _calibrated(loaded: Any, name: str, quiet: bool) -> Any:
    """Calibration statistics on the shipped text, with a progress bar."""
    from dartsim.policies._calibration import calibrate

    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(desc=f"calibrating {name}", unit="passage", file=sys.stderr)

    def advance(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        return calibrate(loaded, advance)
    finally:
        if bar is not None:
            bar.close()


def run(args: argparse.Namespace) -> int:
    from dartsim.policies import get_policy
    from dartsim.record.loop import GenerationOptions
    from dartsim.record.model import load_for_recording
    from dartsim.record.session import record

    policy = get_policy(args.policy)
    settings = policy.settings(_policy_options(args, args.parser_defaults))
    options = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        ignore_eos=args.ignore_eos,
        temperature=args.temperature,
        seed=args.seed,
    )
    prompts = _prompts(args)
    targets = _targets(args, prompts)
    loaded = load_for_recording(args.model, args.device, args.seed)
    stats = _calibrated(loaded, policy.name, args.quiet) if policy.needs_calibration else None
    recorder = policy.recorder(loaded, settings, stats)
    try:
        for prompt, target in zip(prompts, targets, strict=True):
            before = target.stat().st_mtime_ns if target.exists() else None
            try:
                with sigterm_as_interrupt():
                    result = record(
                        loaded, recorder, prompt, options, target, args.chat_template, not args.quiet
                    )
            except KeyboardInterrupt as exc:
                how = "terminated" if isinstance(exc, Terminated) else "interrupted"
                written = target.exists() and target.stat().st_mtime_ns != before
                if written:
                    kept = f"{target} holds the steps recorded so far, marked incomplete"
                elif before is None:
                    kept = f"no step had run, so no trace was written ({target} does not exist)"
                else:
                    kept = f"no step had run, so no trace was written ({target} is as it was)"
                sys.stderr.write(f"dartsim: {how}; {kept}\n")
                return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
            trace = result.trace
            assert trace is not None
            params = getattr(settings, "params", None)
            if isinstance(params, DartParams) and trace.epochs.count == 0 and settings.mode != "dense":
                sys.stderr.write(
                    f"warning: {target}: the run ended after {result.generated} tokens, before its first "
                    f"mask (built after {_first_mask_after(params)}): the trace records no sparsity; "
                    f"raise --max-new-tokens (and --min-new-tokens) or lower {_first_mask_option(params)}\n"
                )
            sys.stderr.write(
                f"wrote {target}: {recorder.label()}, {result.generated} tokens in {result.seconds:.1f} s, "
                f"{trace.epochs.count} mask epochs, {trace.retriggers.count} re-triggers, "
                f"{result.bytes_written} bytes\n"
            )
    finally:
        recorder.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "record",
        help="run DART (or another sparsity policy) on a model and record a trace",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Generate text with DART's dynamic FFN sparsity and record every forward step,\n"
            "mask epoch, drift check and re-trigger, with measured times, into a trace file\n"
            "(format v2; see 'dartsim trace info'). The defaults are the paper's where it\n"
            "gives them; tau, T, c0 and whether the prompt joins the reference are dartsim's\n"
            "(traces/README.md says why). An interrupt (Ctrl-C) or an error mid-generation\n"
            "still leaves a valid trace of what was recorded, marked incomplete.\n\n"
            "--policy records another sparsity system the same way (format v2), so that\n"
            "every one replays on any model and hardware:\n" + policies_help()
        ),
        epilog=(
            "examples:\n"
            "  dartsim record --out two-topic.pt                  the paper's two-topic prompt\n"
            "  dartsim record --prompt 'Explain GPUs.' --sparsity 0.5 --out gpus.pt\n"
            "  dartsim record --prompt-file prompts.jsonl --out traces/   one trace per line\n"
            "  dartsim record --model llama-3.2-3b --max-new-tokens 20 --out shape.pt  (random weights)\n"
            "  dartsim record --preset published-code --no-chat-template --out pc.pt\n"
            "  dartsim record --policy wanda --sparsity 0.5 --out wanda.pt\n"
            "  dartsim record --policy dejavu --oracle --out dejavu-oracle.pt"
        ),
    )
    what = parser.add_argument_group("model and prompt")
    what.add_argument(
        "--model",
        help="a local Hugging Face model folder, or a models_cfg preset (random weights, for "
        "shape tests); default: the bundled SmolLM2-135M-Instruct",
    )
    what.add_argument("--prompt", help="the prompt text (default: the paper's two-topic prompt)")
    what.add_argument(
        "--prompt-file",
        metavar="FILE",
        help="plain text, or .jsonl with one prompt per line (then --out is a folder)",
    )
    what.add_argument(
        "--no-chat-template",
        dest="chat_template",
        action="store_false",
        help="feed the raw prompt (the chat template is on by default for instruct models)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=positive_int, default=500, help="default 500")
    gen.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="suppress end-of-sequence until this many tokens (default 0)",
    )
    gen.add_argument("--ignore-eos", action="store_true", help="never stop at end-of-sequence")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy; >0 samples")
    gen.add_argument("--seed", type=int, default=0, help="seed for sampling and random weights")
    gen.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    dart = parser.add_argument_group("DART")
    dart.add_argument(
        "--preset",
        "--variant",
        dest="preset",
        choices=PRESETS,
        default="paper",
        help="paper (default): the paper's algorithm and values; published-code: what the "
        "authors' code (seeder-research/DART 19c4a57) does, step by step (--variant is an alias)",
    )
    dart.add_argument(
        "--ranking",
        choices=RANKINGS,
        help="published-code neuron ranking (default max, what the authors' drift scripts run; "
        "their argparse default is combined); the paper ranks by sum-of-squares",
    )
    dart.add_argument(
        "--fix-published-defects",
        action="store_true",
        help="published-code: correct the two allocation defects of the authors' code (layer 0 "
        "takes another layer's kept count; sensitivities rotated by one layer after a re-trigger)",
    )
    dart.add_argument(
        "--mode",
        choices=RECORD_MODES,
        default="dart",
        help="dart (default); static: first mask only; dense: no mask",
    )
    dart.add_argument(
        "--mask-apply",
        choices=MASK_APPLY,
        default="zero",
        help="zero u (the reference, default) or compact sliced weights",
    )
    dart.add_argument(
        "--sparsity",
        type=float,
        help=f"target FFN sparsity rho in [0, 1) (default {PAPER_SPARSITY}; "
        f"{PUBLISHED_SPARSITY} for published-code)",
    )
    dart.add_argument("--tau", type=positive_int, help=f"drift window in tokens (default {DEFAULTS.tau})")
    dart.add_argument(
        "--reference-tokens",
        type=positive_int,
        metavar="T",
        help=f"reference length T, a multiple of tau (default {DEFAULTS.reference_tokens})",
    )
    dart.add_argument("--delta", type=float, help=f"Eq. 7 scale (default {PAPER_DELTA})")
    dart.add_argument("--c0", type=positive_int, help=f"counter threshold (default {DEFAULTS.c0})")
    dart.add_argument("--alpha-e", type=float, help=f"Eq. 5 (default {PAPER_ALPHA_E})")
    dart.add_argument("--alpha-l", type=float, help=f"Eq. 5 (default {PAPER_ALPHA_L})")
    dart.add_argument("--beta-e", type=float, help=f"Eq. 5 (default {PAPER_BETA_E})")
    dart.add_argument("--beta-l", type=float, help=f"Eq. 5 (default {PAPER_BETA_L})")
    dart.add_argument("--p-min", type=float, help=f"lowest layer pruning (default {DEFAULTS.p_min})")
    dart.add_argument("--p-max", type=float, help=f"highest layer pruning (default {DEFAULTS.p_max})")
    dart.add_argument(
        "--prompt-in-reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="build the first mask from the prompt (default: from the first T generated tokens, run dense)",
    )
    dart.add_argument(
        "--masking-step",
        type=positive_int,
        help="published-code: the first mask is built from the prompt and the forwards before "
        f"this one, and after a re-trigger this many forwards later (default {DEFAULTS.masking_step})",
    )
    pol = parser.add_argument_group("policy (see the list above)")
    pol.add_argument(
        "--policy",
        choices=policy_names(),
        default="dart",
        help="the sparsity system to record (default dart); --sparsity is the fraction pruned "
        "of what it prunes (default 0.5 for every policy but dart)",
    )
    pol.add_argument(
        "--head-sparsity",
        type=float,
        help=f"dsgp: fraction of heads pruned (default {DEFAULT_HEAD_SPARSITY})",
    )
    pol.add_argument(
        "--oracle", action="store_true", default=None, help="dejavu: top-k of the true activations"
    )
    pol.add_argument(
        "--predictor-rank",
        dest="rank",
        type=positive_int,
        help=f"dejavu: predictor rank (default {DEFAULT_RANK})",
    )
    pol.add_argument(
        "--core-fraction",
        type=float,
        help=f"kgds: share of kept neurons in the knowledge core (default {DEFAULT_CORE_FRACTION})",
    )
    pol.add_argument(
        "--weight-format",
        choices=UNSTRUCTURED_FORMATS,
        help="wanda: how the pruned weights are stored (default bitmap)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="trace file to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run, self_checked_outputs=("out",))
    parser.set_defaults(parser_defaults={name: parser.get_default(name) for name in POLICY_OPTIONS})
