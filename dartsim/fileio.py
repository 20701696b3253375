"""Atomic file output: a crash or an error never leaves a half-written file."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dartsim.errors import UserError

MAX_TEXT_BYTES = 64 << 20
"""Largest text input read (64 MiB): prompts, configs and study results are far smaller;
the bound keeps `/dev/zero` or a wrong file from filling memory."""


def read_text(path: Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file's content, at most `max_bytes` of it (read without trusting the
    reported size, so devices and pipes are bounded too); problems are one-line user errors."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UserError(f"{path}: larger than {max_bytes} bytes, too large for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def json_lines(text: str, where: object) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of JSON-lines text; a line that is not
    JSON (or nests too deeply to parse) is a one-line user error naming `where` and the line."""
    import json

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: line {number}: malformed JSON: {exc.msg}") from None
        except RecursionError:
            raise UserError(f"{where}: line {number}: malformed JSON: nested too deeply") from None


TEMP_SUFFIX = ".tmp"
"""Temporary files are `.NAME.XXXXXXXX.tmp` beside their destination."""
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


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Any], object]) -> None:
    """Call `writer(binary_file_handle)` on a temporary file, then rename it onto `path`.

    The temporary file is removed if `writer` raises, so the destination either keeps its
    old content or gets the complete new one.
    """
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given  # write through a link
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{given}: cannot write, folder {folder} does not exist")
    if target.is_dir():
        raise UserError(f"{given}: is a folder, expected a file to write")
    remove_stale_temporaries(folder, target.name)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise UserError(f"{given}: cannot write: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, _CREATE_MODE & ~_umask())  # mkstemp makes 0600; honour the umask
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise UserError(f"{given}: cannot write: {exc.strerror or exc}") from None
        raise


def write_file_set(folder: str | os.PathLike[str], files: Mapping[str, bytes | str]) -> None:
    """Write several files of one output into `folder` as one set: every destination is
    checked first, every file is written in full to a staging folder beside them, and only
    then are they renamed into place. A failure while rendering or writing (a destination
    that is a folder, a full disk, a permission) leaves the old set untouched, never a mix of
    two runs; only an interruption between two renames (microseconds) could. Names may hold
    one level of subfolder (`stacks/x.yaml`)."""
    target = Path(folder)
    check_folder_writable(target)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target}: cannot create the folder: {exc.strerror or exc}") from None
    for name in files:
        dest = target / name
        if dest.is_dir():
            raise UserError(f"{dest}: is a folder, expected a file to write (nothing was written)")
        if dest.parent != target and dest.parent.exists() and not dest.parent.is_dir():
            raise UserError(f"{dest.parent}: exists and is not a folder (nothing was written)")
    staging = Path(tempfile.mkdtemp(prefix=".dartsim-staging-", dir=target))
    try:
        for name, data in files.items():
            staged = staging / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            payload = data.encode("utf-8") if isinstance(data, str) else data
            with open(staged, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(staged, _CREATE_MODE & ~_umask())
        for name in files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            os.replace(staging / name, target / name)
    except OSError as exc:
        reason = exc.strerror or exc
        raise UserError(f"{target}: cannot write the output: {reason} (the old files are kept)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early, before long work, if `path` cannot be written as a file: its folder is
    missing or not writable, or the path is a folder."""
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"{target}: is a folder, expected a file to write")
    if not folder.is_dir():
        raise UserError(f"{target}: cannot write, folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{target}: cannot write, folder {folder} is not writable")


def check_folder_writable(path: str | os.PathLike[str]) -> None:
    """Fail early if `path` cannot be used as an output folder: it exists and is not a
    folder, or the nearest existing ancestor (where it would be created) is not writable."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder (an output folder is expected)")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{target}: cannot create the folder, {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{target}: cannot write, folder {existing} is not writable")


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str, older_than_s: float = 3600.0) -> int:
    """Remove temporary files of earlier writes to `folder/name` left by a killed process
    (SIGKILL skips every clean-up) and older than `older_than_s`; returns how many."""
    import time

    base = Path(folder) if str(folder) else Path(".")
    now = time.time()
    removed = 0
    for stale in base.glob(f".{glob.escape(name)}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > older_than_s:
                stale.unlink()
                removed += 1
    return removed
