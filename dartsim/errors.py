"""The one exception type for user errors.

Anything a user can get wrong (a missing file, a malformed config, an unknown preset, an
impossible value) raises `UserError` with a message that names the file, the field and
what was expected. The CLI turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input, reported as one line and exit status 2."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UserError:
    """The error for a registry miss: says what was asked for and lists the valid names."""
    return UserError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")
