"""Saving traces atomically and loading them safely (no code runs on load)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.fileio import atomic_write_bytes
from dartsim.trace.types import Trace
from dartsim.trace.upgrade import upgrade

# torch (and the validator, which checks torch tensors) load on first use: a command that
# reads or writes no trace file starts without them.


def trace_from_raw(raw: Any, where: str) -> Trace:
    """A typed Trace from a trace's raw mapping (any readable version): validated field by
    field, then upgraded to the current version."""
    from dartsim.trace.validate import validate_trace

    return Trace.from_dict(upgrade(validate_trace(raw, where)))


def save_trace(trace: Trace | dict[str, Any], path: str | Path) -> int:
    """Validate and write `trace` (typed, or the file's raw mapping) to `path` atomically;
    returns the size in bytes."""
    import torch

    from dartsim.trace.validate import validate_trace

    if isinstance(trace, Trace):
        trace = trace.to_dict()
    validate_trace(trace, str(path))
    buffer = io.BytesIO()
    torch.save(trace, buffer)
    data = buffer.getvalue()
    try:  # the contract: a trace loads with weights_only=True
        torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"internal error: trace for {path} holds a non-plain object: {exc}") from None
    atomic_write_bytes(path, data)
    return len(data)


MAX_TRACE_BYTES = 4 << 30
"""Largest trace file read (4 GiB): per-step scalars and per-epoch masks of a 1M-token run
take tens of MB, so anything near this is not a trace dartsim wrote."""


def _check_archive(p: Path) -> None:
    """Refuse, before anything is decompressed, an archive that would expand beyond its own
    size: torch.save stores entries uncompressed, so a compressed entry is not its work."""
    size = p.stat().st_size
    if size > MAX_TRACE_BYTES:
        raise UserError(f"{p}: {size} bytes is larger than any trace ({MAX_TRACE_BYTES} bytes at most)")
    with zipfile.ZipFile(p) as archive:
        entries = archive.infolist()
        for entry in entries:
            if entry.compress_type != zipfile.ZIP_STORED:
                raise UserError(
                    f"{p}: refused: entry {entry.filename!r} is compressed; traces are written "
                    "uncompressed (torch.save), so this file was not"
                )
        if sum(e.file_size for e in entries) > size:
            raise UserError(f"{p}: refused: its entries claim more bytes than the file holds")


def load_trace(path: str | Path) -> Trace:
    """Load, validate and upgrade a trace. A missing, truncated or corrupt file, a file that
    carries pickled code, or a wrong schema version is a one-line user error."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such trace file")
    if not zipfile.is_zipfile(p):
        raise UserError(f"{p}: truncated or corrupt trace (not a torch zip archive)")
    try:
        _check_archive(p)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{p}: truncated or corrupt trace ({exc})") from None
    try:
        trace = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{p}: refused: the file carries pickled objects other than plain tensors, "
            "numbers and strings; nothing in it was executed"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p}: truncated or corrupt trace ({first})") from None
    return trace_from_raw(trace, str(p))
