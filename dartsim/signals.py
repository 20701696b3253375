"""SIGTERM treated like Ctrl-C during long work, so that what was recorded is kept: a
scheduler or `kill` stops a recording the same way a user at the terminal does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT
"""Exit status after Ctrl-C (the shell's convention, 130)."""
EXIT_TERMINATED = 128 + signal.SIGTERM
"""Exit status after SIGTERM (143)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives inside `sigterm_as_interrupt`."""


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main
    thread; outside it, the previous handler is back. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
