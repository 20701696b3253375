"""Regenerate dartsim/data/text/corpus.json from the Python Language Reference topics that
ship with CPython (`pydoc_data/topics.py`, PSF License Version 2).

Topics are grouped into three task categories (for KG-DS's classifier and masks); within
each category, topics alternate between the calibration and the evaluation split, so the
two splits never share a topic. Run once; the JSON is what dartsim ships and reads.
"""

from __future__ import annotations

import json
import platform
import pydoc_data.topics as topics
import re
import sys
from pathlib import Path

CATEGORIES = {
    "statements": [
        "assert", "assignment", "augassign", "break", "class", "compound", "continue", "del", "for",
        "function", "global", "if", "import", "nonlocal", "raise", "return", "try", "while", "with",
    ],
    "expressions": [
        "atom-identifiers", "atom-literals", "attribute-references", "binary", "bitwise", "booleans",
        "calls", "comparisons", "conversions", "floating", "formatstrings", "integers", "lambda",
        "power", "shifting", "slicings", "strings", "subscriptions", "unary",
    ],
    "data-model": [
        "attribute-access", "callable-types", "customization", "dict", "execmodel", "exceptions",
        "lists", "naming", "numeric-types", "objects", "sequence-types", "specialattrs",
        "string-methods", "truth", "types", "typesfunctions", "typesmapping", "typesseq",
        "typesseq-mutable",
    ],
}  # fmt: skip
MAX_CHARS = 6000
"""Characters kept per topic (the start of the topic's text)."""


def clean(text: str) -> str:
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()[:MAX_CHARS]


def main() -> int:
    out = Path(__file__).resolve().parents[1] / "dartsim" / "data" / "text" / "corpus.json"
    corpus: dict[str, object] = {
        "source": f"CPython {platform.python_version()} Lib/pydoc_data/topics.py (the Python "
        "Language Reference as pydoc serves it)",
        "licence": "PSF License Version 2 (see LICENSE-PSF.txt beside this file); "
        "Copyright (c) 2001 Python Software Foundation; All Rights Reserved",
        "max_chars_per_topic": MAX_CHARS,
        "calibration": [],
        "evaluation": [],
    }
    for category, names in CATEGORIES.items():
        for index, name in enumerate(names):
            split = "calibration" if index % 2 == 0 else "evaluation"
            corpus[split].append({"category": category, "topic": name, "text": clean(topics.topics[name])})  # type: ignore[union-attr]
    out.write_text(json.dumps(corpus, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
