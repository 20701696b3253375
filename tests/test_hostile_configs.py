"""Hostile or absurd configs, prompt files and option values: bounded reads, bounded
fields, one line and exit status 2 within seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TRACE = str(Path(__file__).resolve().parents[1] / "traces" / "two-topic-70.pt")
LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "vocab_size": 100,
}


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
        (json.dumps({**LLAMA, "num_hidden_layers": 10**6}), "'num_hidden_layers' = 1000000 exceeds 1024"),
        (json.dumps({**LLAMA, "hidden_size": 2**40}), "'hidden_size' = 1099511627776 exceeds"),
        (
            '{"model_type": "llama", "num_hidden_layers": ' + "9" * 4000 + "}",
            "an integer of 13288 bits",
        ),
        (
            json.dumps({**LLAMA, "max_position_embeddings": 2**31 - 1}),
            "'max_position_embeddings' = 2147483647",
        ),
    ],
    ids=["deep nesting", "10^6 layers", "hidden 2^40", "4000-digit integer", "context 2^31-1"],
)
def test_a_hostile_model_config_is_one_line(run_cli, tmp_path: Path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("table7", "--models", _config(tmp_path, text))
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") == 1 and len(result.err) < 300


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("table7", "--models", "/dev/zero"), "too large for a model config"),
        (("replay", TRACE, "--hw", "/dev/zero"), "/dev/zero"),
        (("record", "--prompt-file", "/dev/zero", "--out", "OUT"), "too large for a prompt file"),
    ],
    ids=["model", "hardware", "prompt"],
)
def test_dev_zero_as_an_input_file_is_refused_without_reading_it_all(  # type: ignore[no-untyped-def]
    run_cli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(*[str(tmp_path / "t.pt") if a == "OUT" else a for a in args])
    assert result.code == 2 and message in result.err and result.err.count("\n") == 1, result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("table7", "--step-tokens", str(10**15)), "--step-tokens: expected at most 65536"),
        (("table7", "--context", str(2**31)), "--context: expected at most 16777216"),
        (
            ("table7", "--step-tokens", "9" * 5000),
            "--step-tokens: expected a positive integer, got 5000 characters",
        ),
        (
            ("simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--batch", "100000"),
            "--batch: expected at most",
        ),
        (
            ("simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--gen-len", str(10**8)),
            "exceeds llama-3.1-8b",
        ),
    ],
    ids=["table7 tokens", "table7 context", "5000-digit option", "simulate batch", "simulate length"],
)
def test_absurd_option_values_are_refused_at_once(run_cli, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(*args)
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") == 1
