"""Model presets and config.json loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from dartsim.errors import UserError
from dartsim.specs.model import (
    SUPPORTED_MODEL_TYPES,
    load_model_spec,
    models_cfg_dir,
    preset_names,
)

EXPECTED_PRESETS = {
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.2-3b",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "mistral-7b",
    "qwen3-4b",
    "qwen3-14b",
    "smollm2-135m",
}

# Published dimensions (model cards / config.json on the Hub): layers, d, m, H, KV, head_dim.
PUBLISHED_SHAPES = {
    "llama-3.1-8b": (32, 4096, 14336, 32, 8, 128),
    "llama-3.1-70b": (80, 8192, 28672, 64, 8, 128),
    "llama-3.2-3b": (28, 3072, 8192, 24, 8, 128),
    "llama-2-7b": (32, 4096, 11008, 32, 32, 128),
    "llama-2-13b": (40, 5120, 13824, 40, 40, 128),
    "llama-2-70b": (80, 8192, 28672, 64, 8, 128),
    "mistral-7b": (32, 4096, 14336, 32, 8, 128),
    "qwen3-4b": (36, 2560, 9728, 32, 8, 128),
    "qwen3-14b": (40, 5120, 17408, 40, 8, 128),
    "smollm2-135m": (30, 576, 1536, 9, 3, 64),
}


def test_every_required_preset_is_shipped() -> None:
    assert set(preset_names()) >= EXPECTED_PRESETS


@pytest.mark.parametrize("name", sorted(PUBLISHED_SHAPES))
def test_preset_shapes_are_the_published_ones(name: str) -> None:
    spec = load_model_spec(name)
    got = (
        spec.num_layers,
        spec.hidden_size,
        spec.intermediate_size,
        spec.num_heads,
        spec.num_kv_heads,
        spec.head_dim,
    )
    assert got == PUBLISHED_SHAPES[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_parameter_count_equals_transformers_model(name: str) -> None:
    """dartsim's count equals the parameters transformers allocates for the same config."""
    config = AutoConfig.from_pretrained(models_cfg_dir() / f"{name}.json")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    # Tied embeddings are one tensor; parameters() yields it once.
    hf_count = sum(p.numel() for p in model.parameters())
    assert load_model_spec(name).total_params() == hf_count


def test_llama_8b_and_70b_parameter_counts_match_the_model_cards() -> None:
    assert load_model_spec("llama-3.1-8b").total_params() == 8_030_261_248
    assert load_model_spec("llama-3.1-70b").total_params() == 70_553_706_496


def test_path_to_config_json_and_model_folder_both_load(tmp_path: Path) -> None:
    raw = json.loads((models_cfg_dir() / "llama-3.1-8b.json").read_text())
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(raw))
    by_file = load_model_spec(str(folder / "config.json"))
    by_folder = load_model_spec(str(folder))
    assert by_file.name == by_folder.name == "my-model"
    assert by_file.intermediate_size == 14336


def test_preset_names_are_case_insensitive() -> None:
    assert load_model_spec("Llama-3.1-8B").name == "llama-3.1-8b"


def _write(tmp_path: Path, data: object) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return str(path)


def _base() -> dict[str, object]:
    return json.loads((models_cfg_dir() / "smollm2-135m.json").read_text())


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    raw = _base() | {"model_type": "gpt2"}
    with pytest.raises(UserError, match=r"model_type 'gpt2' is not a supported") as err:
        load_model_spec(_write(tmp_path, raw))
    for supported in SUPPORTED_MODEL_TYPES:
        assert supported in str(err.value)


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(UserError, match=re.escape("llama-3.1-8b")) as err:
        load_model_spec("llama-9")
    assert "unknown model 'llama-9'" in str(err.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"model_type": "llama",\n "hidden_size": }')
    with pytest.raises(UserError, match=r"bad\.json: malformed JSON at line 2"):
        load_model_spec(str(path))


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such model config"):
        load_model_spec(str(tmp_path / "absent.json"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden_size", 0, "'hidden_size' must be a positive integer, got 0"),
        ("intermediate_size", -5, "'intermediate_size' must be a positive integer, got -5"),
        (
            "num_key_value_heads",
            4,
            "num_attention_heads=9 is not divisible by num_key_value_heads=4",
        ),
        ("hidden_act", "gelu", "'hidden_act' must be 'silu'"),
        ("head_dim", "64", "'head_dim' must be a positive integer"),
    ],
)
def test_impossible_values_are_rejected_with_the_value(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    raw = _base() | {field: value}
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_model_spec(_write(tmp_path, raw))


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    raw = _base()
    del raw["num_hidden_layers"]
    with pytest.raises(UserError, match="missing field 'num_hidden_layers'"):
        load_model_spec(_write(tmp_path, raw))


def test_qwen3_has_qk_norm_and_wider_attention_than_hidden() -> None:
    spec = load_model_spec("qwen3-4b")
    assert spec.qk_norm
    assert spec.q_width == 4096 and spec.hidden_size == 2560
