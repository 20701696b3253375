"""`dartsim stack list` and `dartsim stack show`: the software-stack presets."""

from __future__ import annotations

import argparse

import yaml

from dartsim.commands.common import add_format_and_out, emit, list_text
from dartsim.report import render
from dartsim.specs.stack import StackSpec, load_stack_spec, stack_preset_names, stack_to_yaml_dict
from dartsim.units import US_PER_S

LIST_FIELDS = (
    "name",
    "launch",
    "host_issue_us",
    "kernel_gap_us",
    "step_overhead_us",
    "allreduce_call_us",
    "attention",
    "prefill",
    "fitted_on",
)


DIGITS = 6
"""Decimals kept of microsecond figures (the files' own precision; no conversion noise)."""


def stack_row(stack: StackSpec) -> dict[str, object]:
    la = stack.launch
    return {
        "name": stack.name,
        "launch": la.mode + (", synchronous" if la.synchronous else ""),
        "host_issue_us": round(la.host_issue_s * US_PER_S, DIGITS),
        "kernel_gap_us": round(la.kernel_gap_s * US_PER_S, DIGITS),
        "step_overhead_us": round(la.step_overhead_s * US_PER_S, DIGITS),
        "allreduce_call_us": round(stack.allreduce.call_s * US_PER_S, DIGITS),
        "attention": stack.attention.family,
        "prefill": stack.prefill.scheduling,
        "fitted_on": ", ".join(sorted(stack.devices)) or "none",
    }


def run_list(args: argparse.Namespace) -> int:
    rows = [stack_row(load_stack_spec(name)) for name in stack_preset_names()]
    header = [
        "stack",
        "launch",
        "host issue (us)",
        "kernel gap (us)",
        "step overhead (us)",
        "all-reduce call (us)",
        "attention kernels",
        "prefill",
        "values fitted on",
    ]
    footer = (
        "\nThe file's own values; a device listed under 'values fitted on' replaces the calibrated"
        " ones with its fit ('dartsim stack show NAME' gives every field with its source).\n"
    )
    emit(list_text(rows, LIST_FIELDS, header, "Software-stack presets", footer, args.format), args.out)
    return 0


def run_show(args: argparse.Namespace) -> int:
    stack = load_stack_spec(args.stack)
    data = stack_to_yaml_dict(stack)
    if args.format == "json":
        text = render.json_text(data)
    else:
        notes = [f"# {stack.source_file}", "# this output is itself a valid stack file"]
        text = "\n".join(notes) + "\n" + yaml.safe_dump(data, sort_keys=False, width=100)
    emit(text, args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stack",
        help="list or show software-stack presets",
        description=(
            "A software stack is what the serving software does on a device, apart from the"
            " hardware: how kernels are launched (CUDA graphs or host-issued) and what that costs"
            " per kernel and per step, the all-reduce and its fixed cost, which operations are"
            " fused, the attention kernels' efficiencies, how prefills are scheduled and the memory"
            " the framework keeps. Anywhere dartsim takes --stack, a path to your own YAML file"
            " in the same schema works too."
        ),
    )
    stack_sub = parser.add_subparsers(dest="stack_command", metavar="ACTION", parser_class=type(parser))
    stack_sub.required = True
    list_parser = stack_sub.add_parser(
        "list",
        help="one line per preset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "One row per software-stack preset: launch mode and costs, the all-reduce's fixed\n"
            "cost, the attention kernels, the prefill scheduling, and the devices whose\n"
            "measurements fitted its calibrated fields."
        ),
        epilog="examples:\n  dartsim stack list\n  dartsim stack list --format csv --out stacks.csv",
    )
    add_format_and_out(list_parser)
    list_parser.set_defaults(handler=run_list)
    show_parser = stack_sub.add_parser(
        "show",
        help="every field of one preset or YAML file, with sources",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Every field of a stack preset or of your own stack file after validation, in the\n"
            "file's units, with the source of each value and the per-device fitted values. The\n"
            "YAML output is a valid stack file: copy it, change a field, pass it as --stack."
        ),
        epilog="examples:\n  dartsim stack show vllm\n"
        "  dartsim stack show trtllm-0.9 --format yaml --out my.yaml",
    )
    show_parser.add_argument("stack", metavar="NAME|FILE", help="preset name or YAML path")
    add_format_and_out(show_parser, ("yaml", "json"))
    show_parser.set_defaults(handler=run_show)
