"""Prompts: the DART paper's two-topic prompt (Appendix E), its multi-topic templates
(Appendix F, Table 6), and reading prompts from files."""

from __future__ import annotations

from pathlib import Path

from dartsim.errors import UserError
from dartsim.fileio import json_lines, read_text

TWO_TOPIC_PROMPT = """Follow these instructions carefully:

Step 1: Write a paragraph explaining electric cars. Include:

- What they are
- How they differ from gasoline vehicles
- How their motors and batteries work
- Why they are considered environmentally friendly

Step 2: After finishing the electric car explanation, write a completely separate paragraph about Italian cuisine. Include:

- Popular dishes
- Key ingredients
- Regional differences in cooking styles

Begin now with Step 1."""
"""Appendix E of the DART paper, verbatim."""

TEMPLATES: dict[str, str] = {
    "explain-and-contrast": (
        "Write about {SUBJECT} - what it is, how it works, and typical uses. Then separately "
        "write about {CULTURE} in {LOCATION}, covering traditions, variations, and social context."
    ),
    "compare-and-assess-impact": (
        "Compare {A} and {B}, focusing on principles, performance, and trade-offs. Then explain "
        "how these differences affect {IMPACT} for {GROUP}."
    ),
    "apply-to-sector-with-policy": (
        "Write about how {CONCEPT} applies to {SECTOR}, including workflow changes, benefits, "
        "and risks. Then discuss policy measures such as {POLICY} that shape adoption."
    ),
    "trace-development-and-ethics": (
        "Trace the scientific development of {DISCOVERY}. Then explain its commercialization in "
        "{SECTOR}. Finally, analyze ethical concerns focusing on {ETHICS}."
    ),
    "system-explanation-with-artistic-reflection": (
        "Explain how {SYSTEM} processes inputs and produces outputs. Then reflect on parallels "
        "with {ART}, considering structure, style, and interpretation."
    ),
}
"""Five of the twelve templates of Table 6 in Appendix F, verbatim apart from markup."""

SAMPLE_PROMPTS: dict[str, str] = {
    "two-topic": TWO_TOPIC_PROMPT,
    "explain-and-contrast": TEMPLATES["explain-and-contrast"].format(
        SUBJECT="solar panels", CULTURE="tea ceremonies", LOCATION="Japan"
    ),
    "compare-and-assess-impact": TEMPLATES["compare-and-assess-impact"].format(
        A="nuclear power", B="wind power", IMPACT="household energy costs", GROUP="rural families"
    ),
    "apply-to-sector-with-policy": TEMPLATES["apply-to-sector-with-policy"].format(
        CONCEPT="machine learning", SECTOR="agriculture", POLICY="data-sharing subsidies"
    ),
    "trace-development-and-ethics": TEMPLATES["trace-development-and-ethics"].format(
        DISCOVERY="CRISPR gene editing", SECTOR="healthcare", ETHICS="informed consent"
    ),
    "system-explanation-with-artistic-reflection": TEMPLATES[
        "system-explanation-with-artistic-reflection"
    ].format(SYSTEM="a search engine", ART="jazz improvisation"),
}
"""The prompts of the shipped sample traces (slot values chosen from Table 6's categories)."""


def read_prompt_file(path: Path) -> list[str]:
    """Plain text (the whole file is one prompt) or JSONL (one prompt per line: a JSON
    string, or an object with a "prompt" field)."""
    text = read_text(path, "prompt file")
    if path.suffix != ".jsonl":
        if not text.strip():
            raise UserError(f"{path}: the prompt file is empty")
        return [text.strip()]
    prompts = []
    for number, item in json_lines(text, path):
        if isinstance(item, dict):
            item = item.get("prompt")
        if not isinstance(item, str) or not item.strip():
            raise UserError(
                f"{path}: line {number}: expected a JSON string or an object with a non-empty 'prompt' field"
            )
        prompts.append(item)
    if not prompts:
        raise UserError(f"{path}: no prompt in the file")
    return prompts
