"""`dartsim hw list` and `dartsim hw show`: the hardware presets."""

from __future__ import annotations

import argparse

import yaml

from dartsim.commands.common import add_format_and_out, emit, list_text
from dartsim.report import render
from dartsim.specs.hardware import HardwareSpec, hardware_preset_names, load_hardware_spec
from dartsim.specs.hardware_yaml import hardware_to_yaml_dict
from dartsim.units import GB, TFLOP

LIST_FIELDS = (
    "name",
    "memory",
    "capacity_gb",
    "bandwidth_gb_per_s",
    "fp8_tflop_per_s",
    "fp16_tflop_per_s",
    "link",
    "link_gb_per_s_per_direction",
)


def hw_row(hw: HardwareSpec) -> dict[str, object]:
    tensor = hw.compute.tensor_flops_per_s
    return {
        "name": hw.name,
        "memory": hw.memory.type,
        "capacity_gb": hw.memory.capacity_bytes / GB,
        "bandwidth_gb_per_s": hw.memory.peak_bandwidth_bytes_per_s / GB,
        "fp8_tflop_per_s": tensor["fp8"] / TFLOP if "fp8" in tensor else None,
        "fp16_tflop_per_s": tensor["fp16"] / TFLOP if "fp16" in tensor else None,
        "link": hw.link.type,
        "link_gb_per_s_per_direction": hw.link.bandwidth_bytes_per_s_per_direction / GB,
    }


def run_list(args: argparse.Namespace) -> int:
    rows = [hw_row(load_hardware_spec(name)) for name in hardware_preset_names()]
    header = [
        "hardware",
        "memory",
        "capacity (GB)",
        "bandwidth (GB/s)",
        "FP8 dense (TFLOP/s)",
        "FP16 dense (TFLOP/s)",
        "link",
        "link (GB/s per direction)",
    ]
    footer = (
        "\nDense tensor-core peaks (never the 2:4-sparse figures); GB = 1e9 bytes."
        " 'dartsim hw show NAME' gives every figure with its source.\n"
    )
    caption = "Hardware presets (dense peaks)"
    emit(list_text(rows, LIST_FIELDS, header, caption, footer, args.format), args.out)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from dartsim.specs.stack import resolve_stack_name

    hw = load_hardware_spec(args.hardware)
    data = hardware_to_yaml_dict(hw)
    # a stack file named relative to the hardware file would not be found beside the copy
    # this output becomes: name it by its full path
    data["default_stack"] = resolve_stack_name(hw.default_stack, hw.source_file)
    if args.format == "json":
        text = render.json_text(data)
    else:
        notes = [f"# {hw.source_file}"]
        if hw.defaults:
            notes.append(f"# defaults applied (not in the file): {', '.join(hw.defaults)}")
        notes.append("# this output is itself a valid hardware file")
        text = "\n".join(notes) + "\n" + yaml.safe_dump(data, sort_keys=False, width=100)
    emit(text, args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "hw",
        help="list or show hardware presets",
        description=(
            "Hardware presets are YAML files with datasheet figures (dense peaks), achievable-"
            "efficiency factors and the source of every number. Anywhere dartsim takes --hw,"
            " a path to your own YAML file in the same schema works too."
        ),
    )
    hw_sub = parser.add_subparsers(dest="hw_command", metavar="ACTION", parser_class=type(parser))
    hw_sub.required = True
    list_parser = hw_sub.add_parser(
        "list",
        help="one line per preset",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "One row per hardware preset: memory type, capacity, bandwidth, FP8 and FP16 dense\n"
            "tensor throughput, and the chip-to-chip link. 'dartsim hw show NAME' gives every\n"
            "field of one preset with its source."
        ),
        epilog="examples:\n  dartsim hw list\n  dartsim hw list --format csv --out hw.csv",
    )
    add_format_and_out(list_parser)
    list_parser.set_defaults(handler=run_list)
    show_parser = hw_sub.add_parser(
        "show",
        help="every figure of one preset or YAML file, with sources",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Every field of a preset or of your own hardware YAML file after validation, in the\n"
            "file's units, with the source of each figure. The YAML output is a valid hardware\n"
            "file: copy it, change a field, and pass the copy as --hw."
        ),
        epilog="examples:\n  dartsim hw show l40s\n"
        "  dartsim hw show h100-sxm --format yaml --out my-h100.yaml",
    )
    show_parser.add_argument("hardware", metavar="NAME|FILE", help="preset name or YAML path")
    add_format_and_out(show_parser, ("yaml", "json"))
    show_parser.set_defaults(handler=run_show)
