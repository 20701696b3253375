"""Property tests of the loaders users feed by hand: whatever a model config, hardware file
or study file holds, loading it gives a spec or one-line UserError, never another
exception. Derandomised, so a run is reproducible."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dartsim.errors import UserError
from dartsim.specs.hardware import hardware_spec_from_dict, load_hardware_spec
from dartsim.specs.hardware_yaml import hardware_to_yaml_dict
from dartsim.specs.model import model_spec_from_config

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "num_hidden_layers": 4,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
}


def _one_line(exc: UserError) -> None:
    assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)


@FUZZ
@given(key=st.sampled_from([*LLAMA, "head_dim", "hidden_act", "unknown"]), value=HOSTILE)
def test_a_model_config_with_any_field_value_loads_or_fails_in_one_line(key: str, value: Any) -> None:
    raw = {**LLAMA, key: value}
    try:
        spec = model_spec_from_config(raw, "fuzz", "fuzz.json")
    except UserError as exc:
        _one_line(exc)
        return
    assert spec.num_layers > 0 and spec.intermediate_size > 0


def _leaves(tree: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaves(v, (*path, k))]
    return [path]


L40S = hardware_to_yaml_dict(load_hardware_spec("l40s"))
L40S_LEAVES = _leaves(L40S)


@FUZZ
@given(where=st.sampled_from(L40S_LEAVES), value=HOSTILE, drop=st.booleans())
def test_a_hardware_file_with_any_field_changed_loads_or_fails_in_one_line(
    where: tuple[str, ...], value: Any, drop: bool
) -> None:
    data = copy.deepcopy(L40S)
    node = data
    for key in where[:-1]:
        node = node[key]
    if drop:
        node.pop(where[-1])
    else:
        node[where[-1]] = value
    try:
        hw = hardware_spec_from_dict(data, "fuzz.yaml")
    except UserError as exc:
        _one_line(exc)
        return
    assert hw.memory.peak_bandwidth_bytes_per_s > 0


STUDY = {
    "name": "fuzz",
    "workload": {"synthetic": {"prompt_len": 16, "gen_len": 160}},
    "models": ["smollm2-135m"],
    "hardware": ["l40s", {"preset": "l40s", "label": "x2", "scale": {"memory.peak_bandwidth_gb_per_s": 2}}],
    "tp": [1],
    "batch": [1],
    "sparsity": [0.7],
}


@FUZZ
@given(key=st.sampled_from([*STUDY, "prompt_len", "precision", "mask_apply", "extra"]), value=HOSTILE)
def test_a_study_file_with_any_field_value_loads_or_fails_in_one_line(
    key: str, value: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    from dartsim.study.spec import load_study

    path = Path(tmp_path_factory.mktemp("study")) / "s.yaml"
    path.write_text(yaml.safe_dump({**STUDY, key: value}))
    try:
        study = load_study(path)
    except UserError as exc:
        _one_line(exc)
        return
    assert study["points"]
