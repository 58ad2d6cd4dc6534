"""One writer at a time: an exclusive lock per thing being written (a run, a fold run, a report, a splits folder).

The lock is an `flock` on a small file beside the thing (`.NAME.lock`), holding the owner's pid and command. The
kernel drops an flock when its process dies, so a lock left by a killed process is taken over at once (and said
so); a lock held by a live process refuses the second writer with one line naming the holder's pid. The file is
removed on release, and so are the folders made for it that are still empty (a command that wrote nothing leaves
no folder); the inode is checked after locking so that a file removed meanwhile is never locked twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from seglib.infra.errors import SeglibError

logger = logging.getLogger(__name__)


class LockedError(SeglibError):
    """Another live process is writing the same thing."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of `target`: `.NAME.lock` in the same folder (beside it, so moving the target keeps it)."""
    target = Path(os.path.abspath(target))  # '' and '.' name the current folder
    if not target.name:
        raise SeglibError(f"{target}: cannot write here (the file system's root)")
    return target.with_name(f".{target.name}.lock")


def output_folder(folder: str | os.PathLike) -> Path:
    """The target whose lock guards a whole folder of outputs (`predict --out`, `evaluate --out`): its lock file,
    `.seglib-output.lock`, lies inside the folder (the command writes there anyway), not beside it in a parent
    that may not be writable (`--out /tmp`, `--out ~`). Links are resolved: two names of a folder share a lock."""
    return Path(folder).resolve() / "seglib-output"


def _read_owner(fd: int) -> tuple[int | None, str]:
    """(pid, command) written in a lock file, or (None, '') when it holds nothing readable."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return None, ""
    first, _, rest = text.partition("\n")
    try:
        return int(first.strip()), rest.strip()
    except ValueError:
        return None, ""


def _holder(fd: int) -> tuple[int | None, str]:
    """The holder's (pid, command), waiting a moment for a holder that has just locked to write them."""
    for _ in range(20):
        pid, command = _read_owner(fd)
        if pid:
            break
        time.sleep(0.005)
    return pid, command


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the lock of `target` for the block, or raise LockedError at once when a live process holds it.

    `what` names the thing in messages ("run runs/x"); a stale lock taken over is said as a warning.
    """
    path = lock_path(target)
    created = _missing_folders(path.parent)  # removed again on release, when the command left them empty
    for attempt in itertools.count():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and attempt < 3:
                continue  # a holder releasing its lock removed the folder meanwhile: make it again
            raise SeglibError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _holder(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid else "another process"
            doing = f" ({command})" if command else ""
            raise LockedError(f"{what}: in use by {holder}{doing}; wait for it to finish or stop it, "
                              "then run this again") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed and maybe re-created between open and flock: lock the current one
    stale_pid, _ = _read_owner(fd)
    if stale_pid and stale_pid != os.getpid():
        logger.warning(f"{what}: took over a stale lock of pid {stale_pid} (no longer running)")
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{' '.join(sys.argv)[:300]}\n".encode(), 0)
        except OSError as exc:  # a full disk: the lock is held all the same, but say why the owner is not named
            raise SeglibError(f"{path}: cannot write the lock file ({exc.strerror or exc}); free some space and "
                              "run this again") from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        for folder in created:  # deepest first; a folder that holds anything now stays
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


_HELD: set[Path] = set()  # locks this process holds through reentrant()


@contextlib.contextmanager
def reentrant(target: str | os.PathLike, what: str) -> Iterator[None]:
    """exclusive(), except that a block of this process already holding the lock (through reentrant) may enter
    again: a training inside `seglib cv`, a recovery inside a training. Another process is refused as before."""
    key = Path(os.path.abspath(target))
    if key in _HELD:
        yield
        return
    with exclusive(target, what):
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)

