"""Prompt sources: the paper's prompts and prompt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dartsim.errors import UserError
from dartsim.record.prompts import SAMPLE_PROMPTS, TEMPLATES, TWO_TOPIC_PROMPT, read_prompt_file


def test_two_topic_prompt_is_the_papers() -> None:
    assert TWO_TOPIC_PROMPT.startswith("Follow these instructions carefully:")
    assert "Italian cuisine" in TWO_TOPIC_PROMPT and TWO_TOPIC_PROMPT.endswith("Begin now with Step 1.")


def test_sample_prompts_fill_every_template_slot() -> None:
    for name, prompt in SAMPLE_PROMPTS.items():
        assert "{" not in prompt and "}" not in prompt, name
    assert set(TEMPLATES) <= set(SAMPLE_PROMPTS) | {"system-explanation-with-artistic-reflection"}


def test_plain_text_file_is_one_prompt(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("  Explain tides.\nThen explain jazz.\n")
    assert read_prompt_file(path) == ["Explain tides.\nThen explain jazz."]


def test_jsonl_holds_one_prompt_per_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps("first") + "\n\n" + json.dumps({"prompt": "second", "id": 7}) + "\n")
    assert read_prompt_file(path) == ["first", "second"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"ok"\n{not json}\n', "line 2: malformed JSON"),
        ('{"text": "no prompt field"}\n', "line 1: expected a JSON string or an object"),
        ("\n\n", "no prompt in the file"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_prompt_file(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.txt"
    empty.write_text("  \n")
    with pytest.raises(UserError, match="the prompt file is empty"):
        read_prompt_file(empty)
    with pytest.raises(UserError, match="no such prompt file"):
        read_prompt_file(tmp_path / "absent.txt")
