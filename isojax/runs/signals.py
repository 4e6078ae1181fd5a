"""SIGINT, SIGTERM and SIGHUP handled alike: as an `Interrupted` exception (a KeyboardInterrupt that knows its
signal), so that every `finally` runs (temporary files removed, locks released) and the command exits
128 + signal with one line.

- `raising()`: while the block runs, SIGTERM and SIGHUP raise `Interrupted` where the program is, as Python's
  own SIGINT handler raises KeyboardInterrupt (the `isojax` command runs inside it).
- `deferred()`: while the block runs, any of the three only records itself (`Flag`); the code checks the flag
  at a safe point (between a sweep's chunks) and raises `flag.interrupted(...)` there.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["HANDLED", "Interrupted", "Flag", "raising", "deferred"]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """An interrupt by a signal: `signum` (SIGINT 2, SIGHUP 1, SIGTERM 15); the exit status is 128 + signum."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


class Flag:
    """The first handled signal received inside a `deferred` block (`signum`, None until one arrives)."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def hit(self) -> bool:
        return self.signum is not None

    def interrupted(self, message: str) -> Interrupted:
        """The exception to raise once it is safe to stop."""
        return Interrupted(message, self.signum or signal.SIGINT)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Interrupted` inside the block (SIGINT keeps Python's KeyboardInterrupt)."""
    if not _on_main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted("", signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[Flag]:
    """SIGINT, SIGTERM and SIGHUP only set the returned flag while the block runs, so that an interrupt never
    lands inside a running XLA program (which crashed the process) or between a chunk's compute and store."""
    flag = Flag()
    if not _on_main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum is None:
            flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
