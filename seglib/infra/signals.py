"""SIGTERM and SIGHUP handled like Ctrl-C: they raise `Terminated` (a KeyboardInterrupt) in the main thread, so
every place that stops cleanly on Ctrl-C (training saves its last epoch, a replaced run is put back, predict says
how many masks it wrote) does the same when `timeout`, `kill`, a batch scheduler or a closing terminal stops it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """The shell's exit status for a stop by signal: 128 + the signal number (130 for Ctrl-C)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise Terminated once; a repeat while stopping is reported, not raised,
    so the clean-up that the first one started (restoring a run, removing a temporary file) is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum, _frame):
        nonlocal stopping
        if stopping:
            print(f"seglib: {signal.Signals(signum).name} again: already stopping", file=sys.stderr)
            return
        stopping = True
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
