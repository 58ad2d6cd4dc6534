"""The notebook kernel a batch runs, stopped cleanly. On a Ctrl-C, SIGTERM or SIGHUP of `seglib report` the
kernel is interrupted and given time to stop (so a training cell stops the way Ctrl-C stops `seglib train`: its
last saved epoch kept, a replaced run put back) before it is shut down; what it prints to its own stderr while
being shut down mid-cell (ZMQ tracebacks of sockets closed under it) is kept out of the terminal."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from seglib.infra.signals import HANDLED

STOPS = (signal.SIGINT, *HANDLED)
INTERRUPTED_WAIT_S = 60.0  # how long an interrupted cell may take to stop before its kernel is killed


class StopFlag:
    """Which stop signal arrived during a notebook (None: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextlib.contextmanager
def noting_stops(flag: StopFlag) -> Iterator[None]:
    """Within the block, a stop signal is noted in `flag`, then handled as before (raised as KeyboardInterrupt
    or Terminated). Signals whose handler is not a Python function (SIG_DFL, SIG_IGN) are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOPS}

    def noting(signum, frame):
        flag.signum = flag.signum or signum
        previous[signum](signum, frame)

    for s, handler in previous.items():
        if callable(handler):
            signal.signal(s, noting)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if callable(handler):
                signal.signal(s, handler)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Hold stop signals for a few renames that must not be cut in half; one that arrived is raised after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in STOPS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:  # as it would have been handled (default_int_handler raises KeyboardInterrupt)
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def cancel_leftover_tasks(timeout_s: float = 10.0) -> None:
    """Cancel what an interrupted papermill left pending on jupyter_core's event loop (the stopped cell's reply
    and liveness polls): left there, they would run under the next notebook of this process and fail noisily."""
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if loop.is_running():
        return
    loop.set_exception_handler(_quiet_about_the_stop)
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    papermill_log = logging.getLogger("papermill")  # a late output of the stopped kernel (the noise of its
    disabled, papermill_log.disabled = papermill_log.disabled, True  # shutdown) would reach the terminal
    try:
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=timeout_s))
    finally:
        papermill_log.disabled = disabled
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: not logged as "never retrieved" when collected


def _quiet_about_the_stop(loop, context: dict) -> None:
    """The loop's handler of errors nobody awaited: the stop itself (a task it was raised in) is not news."""
    if isinstance(context.get("exception"), KeyboardInterrupt):
        return
    loop.default_exception_handler(context)


def kernel_manager_class(flag: StopFlag, stderr_file):
    """A jupyter_client kernel manager that starts the kernel with its stderr in `stderr_file`, and, when `flag`
    says the batch is being stopped, interrupts the running cell and waits (up to a minute) until it has stopped
    before shutting the kernel down; by default it would be interrupted and killed 5 s later, mid-cell."""
    from jupyter_client.manager import AsyncKernelManager

    class StoppableKernelManager(AsyncKernelManager):  # public methods only: start, interrupt, shut down
        async def start_kernel(self, **kw) -> None:
            kw.setdefault("stderr", stderr_file)  # passed down to the kernel's Popen (kept for a restart too)
            await super().start_kernel(**kw)

        async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            if flag.signum is not None and not now and self.has_kernel:
                with contextlib.suppress(Exception):  # a kernel that is gone already needs no waiting for
                    await self.interrupt_kernel()
                    await _until_idle(self, INTERRUPTED_WAIT_S)
            await super().shutdown_kernel(now=now, restart=restart)

    return StoppableKernelManager


async def _until_idle(km, timeout_s: float) -> None:
    """Wait until the kernel has finished its (interrupted) cell: it answers a kernel_info request on the shell
    channel only after the cell running before it."""
    client = km.client()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        await client.kernel_info(reply=True, timeout=timeout_s)
    finally:
        client.stop_channels()


@contextlib.contextmanager
def kernel_stderr() -> Iterator[IO[bytes]]:
    """A file for the kernel's own stderr; `relay_stderr` shows it when the notebook was not stopped."""
    with tempfile.TemporaryFile(prefix="seglib-kernel-") as fh:
        yield fh


# what an idle kernel logs when jupyter_client interrupts it on its way to shutting it down: not news
SHUTDOWN_NOISE = ("[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel",)


def relay_stderr(fh, limit: int = 20_000) -> None:
    """Copy what the kernel wrote to its stderr (library warnings, a crash) to ours, after the notebook."""
    with contextlib.suppress(OSError, ValueError):
        fh.flush()
        fh.seek(0)
        lines = fh.read(limit).decode("utf-8", "replace").splitlines()
        text = "\n".join(line for line in lines if not line.startswith(SHUTDOWN_NOISE))
        if text.strip():
            sys.stderr.write(text + "\n")
