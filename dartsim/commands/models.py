"""`dartsim models`: the model presets and their shapes."""

from __future__ import annotations

import argparse

from dartsim.commands.common import add_format_and_out, emit
from dartsim.report import render
from dartsim.specs.model import ModelSpec, load_model_spec, preset_names

BILLION = 10**9
"""Parameter counts print in billions."""

FIELDS = (
    "name",
    "model_type",
    "layers",
    "hidden",
    "ffn",
    "heads",
    "kv_heads",
    "head_dim",
    "vocab",
    "params",
    "attention_params",
    "mlp_params",
    "attention_share",
    "mlp_share",
)


def model_row(spec: ModelSpec) -> dict[str, object]:
    """The listing's record of one model (counts are exact parameter numbers)."""
    total = spec.total_params()
    attention = spec.num_layers * spec.attention_params_per_layer()
    mlp = spec.num_layers * spec.mlp_params_per_layer()
    return {
        "name": spec.name,
        "model_type": spec.model_type,
        "layers": spec.num_layers,
        "hidden": spec.hidden_size,
        "ffn": spec.intermediate_size,
        "heads": spec.num_heads,
        "kv_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "vocab": spec.vocab_size,
        "params": total,
        "attention_params": attention,
        "mlp_params": mlp,
        "attention_share": attention / total,
        "mlp_share": mlp / total,
    }


def _billions(n: object) -> str:
    return f"{int(n) / BILLION:.3f} B"  # type: ignore[call-overload]


def render_models(rows: list[dict[str, object]], fmt: str) -> str:
    if fmt == "json":
        return render.json_text(rows)
    if fmt == "csv":
        return render.csv_text(FIELDS, [[row[f] for f in FIELDS] for row in rows])
    header = [
        "model",
        "type",
        "layers",
        "hidden",
        "FFN",
        "heads",
        "KV heads",
        "head dim",
        "params (1e9)",
        "attention",
        "MLP",
    ]
    table = [
        [
            str(row["name"]),
            str(row["model_type"]),
            str(row["layers"]),
            str(row["hidden"]),
            str(row["ffn"]),
            str(row["heads"]),
            str(row["kv_heads"]),
            str(row["head_dim"]),
            _billions(row["params"]),
            f"{_billions(row['attention_params'])} ({row['attention_share']:.1%})",
            f"{_billions(row['mlp_params'])} ({row['mlp_share']:.1%})",
        ]
        for row in rows
    ]
    if fmt == "latex":
        return render.latex_table(header, table, "Model presets")
    note = (
        "\nParameter counts are exact (1e9 = billions). The attention and MLP columns give"
        " their share of all parameters; the rest is embeddings, lm_head and norms.\n"
    )
    return render.markdown_table(header, table) + note


def run(args: argparse.Namespace) -> int:
    names = args.models or preset_names()
    rows = [model_row(load_model_spec(name)) for name in names]
    emit(render_models(rows, args.format), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models",
        help="list the model presets with their shapes and parameter counts",
        description=(
            "List model presets (the config.json files in models_cfg/) with layers, hidden"
            " size, FFN width, heads, KV heads, head dim and parameter counts split into"
            " attention and MLP. Give preset names or paths to HF config.json files to list"
            " just those."
        ),
        epilog="examples:\n  dartsim models\n"
        "  dartsim models llama-3.1-70b path/to/config.json --format json",
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="preset name or config.json path")
    add_format_and_out(parser)
    parser.set_defaults(handler=run)
