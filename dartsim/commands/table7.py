"""`dartsim table7`: the DART paper's Table 7, reproduced, or made for other workloads."""

from __future__ import annotations

import argparse

from dartsim.commands.common import (
    MAX_STEP_TOKENS,
    add_format_and_out,
    add_precision,
    bounded_int,
    emit,
    fraction,
    precision_from,
    split_list,
)
from dartsim.report.table7 import (
    DEFAULT_KEEP,
    PAPER_CONTEXT,
    PAPER_MODELS,
    PAPER_TOKENS,
    Table7Workload,
    render_table7,
    table7_records,
)
from dartsim.specs.model import MODEL_FIELD_LIMITS, load_model_spec
from dartsim.units import UNIT_SYSTEMS


def run(args: argparse.Namespace) -> int:
    specs = [load_model_spec(name) for name in split_list(args.models, "--models")]
    workload = Table7Workload(tokens=args.step_tokens, context=args.context, precision=precision_from(args))
    units = UNIT_SYSTEMS[args.units]
    energy = None
    if args.energy_hw:
        from dartsim.errors import UserError
        from dartsim.specs.hardware import load_hardware_spec

        hw = load_hardware_spec(args.energy_hw)
        if hw.energy is None:
            raise UserError(
                f"--energy-hw {args.energy_hw}: {hw.source_file} has no energy section (docs/energy.md)"
            )
        energy = hw.energy
    records = table7_records(specs, workload, keep=args.keep, units=units, energy=energy)
    emit(render_table7(records, workload, args.keep, units, args.format), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "table7",
        help="the DART paper's Table 7 (attention vs MLP memory and compute), reproduced",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Attention and MLP memory traffic and matmul FLOPs, dense and with a kept fraction\n"
            "of FFN neurons, summed over all layers of one decode step. With the defaults this\n"
            "is the paper's Table 7: 128 tokens at context 128, FP8 weights and KV cache, FP16\n"
            "activations, binary units (the paper's 'GB' are GiB, its 'TFLOPS' 2^40 FLOP).\n"
            "The paper's printed cells are shown beside dartsim's, with the kept fraction\n"
            "each printed sparse cell implies under dartsim's kernel model."
        ),
        epilog=(
            "examples:\n"
            "  dartsim table7\n"
            "  dartsim table7 --keep 0.5 --units decimal\n"
            "  dartsim table7 --models llama-2-7b,qwen3-14b --step-tokens 1 --context 4096\n"
            "  dartsim table7 --weight-dtype int4 --format latex --out table7.tex\n"
            "  dartsim table7 --energy-hw h100-sxm"
        ),
    )
    parser.add_argument(
        "--models",
        default=",".join(PAPER_MODELS),
        help="comma-separated presets or config.json paths (default: the paper's two)",
    )
    parser.add_argument(
        "--keep",
        type=fraction,
        default=DEFAULT_KEEP,
        help=f"kept fraction of FFN neurons in every layer for the sparse column "
        f"(default {DEFAULT_KEEP:.2f}: the paper's '70%% sparse')",
    )
    parser.add_argument(
        "--step-tokens",
        type=bounded_int(MAX_STEP_TOKENS, "serving batches reach a few thousand sequences"),
        default=PAPER_TOKENS,
        help=f"tokens in the decode step, one per sequence (default {PAPER_TOKENS})",
    )
    parser.add_argument(
        "--context",
        type=bounded_int(
            MODEL_FIELD_LIMITS["max_position_embeddings"][0], "the longest context dartsim models"
        ),
        default=PAPER_CONTEXT,
        help=f"positions each token attends to, itself included (default {PAPER_CONTEXT})",
    )
    parser.add_argument(
        "--units",
        choices=sorted(UNIT_SYSTEMS),
        default="binary",
        help="binary: GiB and 2^40 FLOP (the paper's); decimal: GB and 1e12 FLOP",
    )
    parser.add_argument(
        "--energy-hw",
        metavar="NAME|FILE",
        help="add each component's dynamic energy (J) under this hardware's energy constants: DRAM "
        "bytes and their on-chip trip, every FLOP at the tensor rate; no static power (no time here)",
    )
    add_precision(parser)
    add_format_and_out(parser)
    parser.set_defaults(handler=run)
