"""The `dartsim` command line: subcommands only, the logic lives in the packages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from dartsim import __version__
from dartsim.errors import UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


OUTPUT_OPTIONS = ("out", "perfetto", "json", "fit", "plot")
"""Namespace attributes that name something a command writes, checked before it starts."""


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> how the user writes it (`--hw`, or `TRACE` for a positional), over every
    subcommand's parser."""
    names: dict[str, str] = {}
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif action.option_strings:
                names.setdefault(action.dest, max(action.option_strings, key=len))
            else:
                shown = action.metavar if isinstance(action.metavar, str) else action.dest
                names.setdefault(action.dest, shown.upper())
    return names


def check_empty_values(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """An option or argument given as an empty string (`--hw ''`, `--out ''`) is an error: it
    was either ignored (the default used instead) or reported as a confusing path."""
    names = _option_names(parser)
    for dest, value in sorted(vars(args).items()):
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = names.get(dest, dest)
            raise UserError(f"{name} is empty: give a value or leave it out")


def check_destinations(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that cannot be written: an unwritable or missing
    folder, or a folder where a file is expected (and the reverse). A command marks an
    option that names a folder with `set_defaults(output_folders=(...))`; `record` checks
    its own --out, which is a file or a folder depending on the number of prompts."""
    from dartsim.fileio import check_folder_writable, check_writable

    folders = getattr(args, "output_folders", ())
    for name in OUTPUT_OPTIONS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or name in getattr(args, "self_checked_outputs", ()):
            continue
        if name in folders:
            check_folder_writable(value)
        else:
            check_writable(value)


def build_parser() -> argparse.ArgumentParser:
    from dartsim.commands import (
        hardware,
        models,
        record,
        replay,
        report,
        serve,
        stack,
        study,
        table7,
        trace,
        validate,
    )

    parser = _Parser(
        prog="dartsim",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "dartsim: what dynamic FFN sparsity (DART and its kin) does to an accelerator.\n\n"
            "Exact per-kernel FLOPs and bytes for Llama-family decoders, hardware presets\n"
            "with cited datasheet figures, and the DART paper's Table 7 reproduced."
        ),
        epilog=(
            "examples:\n"
            "  dartsim models                     list the model presets\n"
            "  dartsim hw list                    list the hardware presets\n"
            "  dartsim hw show l40s               one preset, with the source of every figure\n"
            "  dartsim stack list                 list the software-stack presets\n"
            "  dartsim table7                     the paper's Table 7, reproduced\n"
            "  dartsim table7 --keep 0.5 --format json --out t7.json\n\n"
            "Run 'dartsim COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dartsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    models.register(sub)
    hardware.register(sub)
    stack.register(sub)
    table7.register(sub)
    record.register(sub)
    trace.register(sub)
    report.register(sub)
    replay.register(sub)
    serve.register(sub)
    study.register(sub)
    validate.register(sub)
    return parser


REPORT_NAMES = ("figure5", "retriggers", "host-check", "run", "mechanisms", "detector", "policies", "serve")
"""The `dartsim report` subcommands; anything else after `report` is taken as a trace."""


def _report_shorthand(argv: list[str]) -> list[str]:
    """`dartsim report TRACE...` means `dartsim report run TRACE...`."""
    if len(argv) >= 2 and argv[0] == "report" and argv[1] not in REPORT_NAMES and not argv[1].startswith("-"):
        return ["report", "run", *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dartsim` console script."""
    parser = build_parser()
    args = parser.parse_args(_report_shorthand(list(sys.argv[1:] if argv is None else argv)))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        check_empty_values(args, parser)
        check_destinations(args)
        return handler(args)
    except UserError as exc:
        sys.stderr.write(f"dartsim: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("dartsim: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
