"""The text shipped for calibration and evaluation (dartsim/data/text/corpus.json).

Python Language Reference topics, as CPython ships them in `pydoc_data/topics.py` (PSF
License Version 2; the licence is beside the file); scripts/extract_policy_text.py
regenerates the file. Topics are grouped into three task categories; within a category
they alternate between the calibration and the evaluation split, so no topic is in both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

SPLITS = ("calibration", "evaluation")


@dataclass(frozen=True)
class Passage:
    category: str
    topic: str
    text: str


@cache
def corpus() -> dict[str, Any]:
    """The parsed corpus file (source, licence and both splits)."""
    text = resources.files("dartsim.data.text").joinpath("corpus.json").read_text(encoding="utf-8")
    return json.loads(text)


def passages(split: str) -> list[Passage]:
    """The passages of one split, in file order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return [Passage(p["category"], p["topic"], p["text"]) for p in corpus()[split]]


def categories() -> list[str]:
    """Task categories in first-seen order."""
    seen: dict[str, None] = {}
    for p in passages("calibration"):
        seen.setdefault(p.category, None)
    return list(seen)
