"""Untrusted strings made safe to print: a trace or config can carry terminal escapes
(`ESC[2J` clears the screen) that must reach a terminal as visible text, not as commands."""

from __future__ import annotations

import unicodedata


def printable(value: object) -> str:
    """`value` as text with control and format characters (ESC, BEL, CR, bidi overrides,
    newlines) written as Python escapes; everything printable passes unchanged."""
    text = str(value)
    if all(ch.isprintable() for ch in text):
        return text
    return "".join(
        ch if ch.isprintable() else repr(ch)[1:-1] if unicodedata.category(ch) != "Zs" else " " for ch in text
    )
