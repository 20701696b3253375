"""Rendering rows of a table as markdown, CSV or LaTeX, and records as JSON.

Every renderer is deterministic: the same rows give byte-identical text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

FORMATS = ("md", "csv", "json", "latex")


def cell(text: str) -> str:
    """One markdown table cell: a `|` inside it is escaped and a line break becomes a space,
    so that a label or a header such as `median |error|` cannot split the row."""
    return str(text).replace("\r", " ").replace("\n", " ").replace("\\|", "|").replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (cells escaped: `cell`)."""
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(payload: Any) -> str:
    """Stable JSON: sorted keys, fixed indentation, a trailing newline."""
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


_LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "^": r"\^{}", "$": r"\$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    """A booktabs `table` environment."""
    cols = "l" * 3 + "r" * (len(header) - 3)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
