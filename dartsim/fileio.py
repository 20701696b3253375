"""Atomic file output: a crash or an error never leaves a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from dartsim.errors import UserError


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a missing or unreadable file is a one-line user error."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None


_CREATE_MODE = 0o666
"""What a new file may be, before the umask (as open() creates files)."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[object], object]) -> None:
    """Call `writer(binary_file_handle)` on a temporary file, then rename it onto `path`.

    The temporary file is removed if `writer` raises, so the destination either keeps its
    old content or gets the complete new one.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{target}: cannot write, folder {folder} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, _CREATE_MODE & ~_umask())  # mkstemp makes 0600; honour the umask
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early, before long work, if `path` cannot be written as a file: its folder is
    missing or not writable, or the path is a folder."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"{target}: is a folder, expected a file to write")
    if not folder.is_dir():
        raise UserError(f"{target}: cannot write, folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{target}: cannot write, folder {folder} is not writable")
