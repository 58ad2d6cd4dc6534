"""Decode ahead and write behind: a folder of photos keeps the network busy while other threads decode the
next photos and write the last one's outputs (Pillow, OpenCV and ONNX Runtime release the GIL while they work).

`decoded_ahead(items, decode)` yields (item, decode(item)) in order, up to `PREFETCH` items decoded ahead on a
thread of their own; with `workers=N`, N threads work on consecutive items at once (the network stage: photos
predicted side by side, one core each, rather than each photo's layers split over the cores). `WriteBehind` runs write jobs in order on another thread; an interrupt raised inside a job
(Ctrl-C or SIGTERM while a file is written) skips the jobs queued after it and is raised again in the caller
by `harvest`; `close` waits for the jobs already handed over, so that what the report counts is on disk.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PREFETCH = 2  # photos decoded ahead of the network
BEHIND = 2  # write jobs that may wait behind the network before it waits for them


def decoded_ahead(items: Iterable[T], decode: Callable[[T], R], *, workers: int = 1,
                  name: str = "decode") -> Iterator[tuple[T, R]]:
    """(item, decode(item)) in order, `decode` run on `workers` threads; an exception raised by `decode` is
    raised here, at its item."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"seglib-{name}")
    window: deque[tuple[T, Future]] = deque()
    pending = iter(items)
    try:
        for item in pending:
            window.append((item, pool.submit(decode, item)))
            if len(window) > PREFETCH + workers - 1:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class WriteBehind:
    """Write jobs run in order on one thread while the caller goes on (see the module)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seglib-write")
        self._jobs: deque[Future] = deque()
        self._stopped = threading.Event()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue a job; when BEHIND jobs wait already, first wait for the oldest (its interrupt is raised here)."""
        self._jobs.append(self._pool.submit(self._run, job))
        while len(self._jobs) > BEHIND:
            self._jobs.popleft().result()
        self.harvest()

    def _run(self, job: Callable[[], None]) -> None:
        if self._stopped.is_set():
            return
        try:
            job()
        except BaseException:
            self._stopped.set()
            raise

    def harvest(self, wait: bool = False) -> None:
        """Raise the exception of the oldest finished job that failed (all jobs, with `wait`)."""
        while self._jobs and (wait or self._jobs[0].done()):
            self._jobs.popleft().result()

    def close(self) -> None:
        """Wait for the jobs handed over (their exceptions are not raised: the caller is stopping already)."""
        self._pool.shutdown(wait=True)
        self._jobs.clear()
