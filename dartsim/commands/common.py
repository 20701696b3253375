"""The table of options shared by several subcommands: each declared once here, with one
meaning and one default everywhere it appears.

- `--hw NAME|FILE`: a hardware preset or file; `--tp N|auto` (default auto: the smallest
  degree that fits); `--model`: a model preset or config.json.
- `--format`: `md` is the human format of every command (markdown tables), beside `json`,
  `csv` and command-specific ones (`latex`, `yaml`).
- `--out FILE` for commands that write one file, `--out DIR` for those that write a set
  (replay, simulate, study, report run); every destination is checked before work starts.
- `--prompt-len` / `--gen-len`: prompt and generated tokens per sequence.
- `--quiet`: no progress bar or progress lines.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from dartsim.errors import UserError
from dartsim.report.render import FORMATS
from dartsim.specs.dtypes import DTYPES, get_dtype
from dartsim.workload import Precision

if TYPE_CHECKING:
    from dartsim.specs.hardware import HardwareSpec
    from dartsim.specs.stack import StackSpec


def emit(text: str, out: str | None) -> None:
    """Print `text`, or write it atomically to `out`."""
    if out is None:
        sys.stdout.write(text)
        return
    from dartsim.fileio import atomic_write_text

    atomic_write_text(out, text)
    sys.stderr.write(f"wrote {out}\n")


def add_format(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS, note: str = "") -> None:
    """`--format`, the first of `formats` the default."""
    parser.add_argument(
        "--format",
        choices=formats,
        default=formats[0],
        help=f"output format (default {formats[0]}){note}",
    )


def add_out_file(parser: argparse.ArgumentParser, what: str = "", required: bool = False) -> None:
    """`--out FILE`: written atomically, instead of standard output unless `required`."""
    default = "write to FILE (atomically) instead of standard output"
    parser.add_argument("--out", metavar="FILE", required=required, help=what or default)


def add_out_folder(parser: argparse.ArgumentParser, what: str) -> None:
    """`--out DIR`: a folder of files (created if missing, checked before work starts)."""
    parser.add_argument("--out", metavar="DIR", help=what)
    parser.set_defaults(output_folders=("out",))


def add_format_and_out(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    add_format(parser, formats)
    add_out_file(parser)


def add_hw(parser: argparse.ArgumentParser, default: str | None = None, several: bool = False) -> None:
    """`--hw`: one preset or file (or a comma-separated list with `several`)."""
    what = "comma-separated presets or YAML files" if several else "hardware preset or YAML file"
    if default is None:
        parser.add_argument("--hw", required=True, metavar="NAME|FILE", help=f"{what} (see dartsim hw list)")
    else:
        parser.add_argument("--hw", default=default, metavar="NAME|FILE", help=f"{what} (default {default})")


def add_stack(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """`--stack NAME|FILE`: the software stack (default: the hardware's default_stack)."""
    what = (
        "comma-separated software stacks (presets or YAML files)"
        if several
        else "software stack preset or YAML file"
    )
    parser.add_argument(
        "--stack",
        default=None,
        metavar="NAME|FILE",
        help=f"{what}: launch costs, CUDA graphs, all-reduce, fusion, attention kernels, prefill "
        "scheduling (default: the hardware's default_stack; see dartsim stack list)",
    )


def stack_from(name: str | None, hw: HardwareSpec) -> StackSpec:
    """The stack `--stack` names as it runs on `hw` (None: the hardware's default)."""
    from dartsim.specs.stack import default_stack, stack_for

    return default_stack(hw) if name is None else stack_for(name, hw)


def add_tp(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """`--tp N|auto`, default auto: the smallest degree whose shard fits the device."""
    what = "comma-separated tensor-parallel degrees, or auto" if several else "tensor-parallel degree"
    parser.add_argument(
        "--tp", default="auto", metavar="N|auto", help=f"{what} (default auto: the smallest that fits)"
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")


def add_precision(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(DTYPES)
    group = parser.add_argument_group("precision (storage formats; one of " + names + ")")
    group.add_argument("--weight-dtype", default="fp8", help="weights (default fp8)")
    group.add_argument("--act-dtype", default="fp16", help="activations between kernels (default fp16)")
    group.add_argument("--kv-dtype", default="fp8", help="KV cache (default fp8)")


def precision_from(args: argparse.Namespace) -> Precision:
    return Precision(
        weight=get_dtype(args.weight_dtype),
        activation=get_dtype(args.act_dtype),
        kv_cache=get_dtype(args.kv_dtype),
    )


MAX_INT_CHARS = 19
"""Longest integer option accepted before parsing (int64 has 19 digits)."""
MAX_STEP_TOKENS = 1 << 16
"""Most tokens (sequences) in one step: serving batches reach a few thousand sequences."""
MAX_SIMULATED_SEQUENCES = 1024
"""Most sequences `simulate` synthesises (one trace each; the union of 1024 masks is dense)."""


def positive_int(text: str) -> int:
    """argparse type: a positive integer."""
    if len(text) > MAX_INT_CHARS:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {len(text)} characters")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def bounded_int(limit: int, why: str) -> Callable[[str], int]:
    """argparse type: a positive integer at most `limit`; `why` says where the bound comes from."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"expected at most {limit} ({why}), got {value}")
        return value

    return parse


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def split_list(text: str, what: str) -> list[str]:
    """`a,b,c` as its items; an empty list or an empty item (`a,,b`, `a,`) is an error,
    never silently dropped."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise UserError(f"{what}: expected a comma-separated list, got {text!r}")
    if not all(items):
        raise UserError(f"{what}: an empty item in {text!r} (a stray comma?)")
    return items


def list_text(
    rows: list[dict[str, object]],
    fields: tuple[str, ...],
    header: list[str],
    caption: str,
    footer: str,
    fmt: str,
) -> str:
    """A list of presets (`hw list`, `stack list`) in the requested format: JSON records,
    CSV of `fields`, or a table with `header` (LaTeX with `caption`; markdown with `footer`)."""
    from dartsim.report import render

    if fmt == "json":
        return render.json_text(rows)
    if fmt == "csv":
        return render.csv_text(fields, [[row[f] for f in fields] for row in rows])
    table = [[_cell(row[f]) for f in fields] for row in rows]
    if fmt == "latex":
        return render.latex_table(header, table, caption)
    return render.markdown_table(header, table) + footer


def _cell(value: object) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
