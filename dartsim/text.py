"""Untrusted strings made safe to print: a trace or config can carry terminal escapes
(`ESC[2J` clears the screen) that must reach a terminal as visible text, not as commands."""

from __future__ import annotations

import reprlib
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


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 50
_REPR.maxlist = _REPR.maxdict = 4
_REPR.maxlevel = 2
_PLAIN = (bool, int, float, str, type(None), list, tuple, dict)


def brief(value: object) -> str:
    """A value from a file for an error message: cut to a readable length without walking
    a large value, huge integers by their size, other objects (a tensor) by their type,
    control characters escaped."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    if not isinstance(value, _PLAIN):
        return type(value).__name__
    return printable(_REPR.repr(value))
