"""One consistent version of a splits folder for a reader (evaluation, training): read once, checked after.

`seglib data split` replaces the files of a splits folder one at a time (each atomically), holding the folder's
lock. A reader that read train.csv before such a rewrite and test.csv after it would score, or train on, a mix of
two splits. `snapshot_splits` reads every split file once (the bytes every later table comes from), then checks
that no writer holds the folder's lock and that the files still hold those bytes; `SplitSnapshot.check_unchanged`
repeats the check when the work is done, so a split rewritten meanwhile is refused instead of silently recorded.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seglib.data.splits import SPLITS, fold_tables, ids_hash, lock_target, parse_folds, parse_split
from seglib.infra import paths
from seglib.infra.errors import DataError
from seglib.infra.locks import lock_path
from seglib.infra.paths import display_path

SPLIT_FILE_NAMES = (*(f"{name}.csv" for name in SPLITS), "folds.csv")


def _read_files(folder: Path) -> dict[str, bytes | None]:
    """{file name: its bytes, None when absent} of every split file of `folder`."""
    out: dict[str, bytes | None] = {}
    for name in SPLIT_FILE_NAMES:
        try:
            out[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            out[name] = None
        except OSError as exc:
            raise DataError(f"{folder / name}: cannot read ({exc.strerror or exc})") from None
    return out


def writer_pid(folder: Path) -> int | None:
    """The pid of a live `seglib data split` writing `folder` now (0 when it is unknown), else None.

    A writer holds an flock on the folder's lock file; a shared lock tried here without waiting fails while it
    does. A lock file left by a killed writer holds no flock and does not count."""
    try:
        fd = os.open(lock_path(lock_target(folder)), os.O_RDONLY)
    except (OSError, DataError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            first = os.pread(fd, 64, 0).decode("utf-8", "replace").partition("\n")[0].strip()
            return int(first) if first.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SplitSnapshot:
    """The bytes of a splits folder's files as read once; every table a reader uses comes from them."""

    folder: Path
    files: dict

    def sha1(self, name: str | None = None) -> str:
        """Short hash of one file's bytes ('' when absent), or of all of them."""
        names = [name] if name is not None else SPLIT_FILE_NAMES
        digest = hashlib.sha1()
        for n in names:
            digest.update(f"{n}:".encode() + (self.files.get(n) or b"-") + b"\0")
        return digest.hexdigest()[:12] if name is None or self.files.get(name) is not None else ""

    def table(self, split: str) -> pd.DataFrame:
        """The split's table, as `read_split` reads it, from the snapshot's bytes."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        path = self.folder / f"{split}.csv"
        data = self.files.get(f"{split}.csv")
        if data is None:
            raise DataError(f"{path}: split file not found (run `seglib data split`)")
        return parse_split(data, path)

    def fold_split(self, fold: int, inner: int = -1) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(train, val) of a cross-validation fold (and inner fold), as `splits.fold_split` makes them, from the
        snapshot."""
        path = self.folder / "folds.csv"
        if self.files.get("folds.csv") is None:
            raise DataError(f"{path}: folds file not found (run `seglib data split --folds 5`)")
        return fold_tables(fold, parse_folds(self.files["folds.csv"], path), self.table("train"),
                           self.table("val"), path, inner)

    def fingerprint(self) -> dict:
        """`splits.split_fingerprint` of the snapshot: the folder and a hash of each split's image ids."""
        out: dict = {"splits_dir": display_path(self.folder)}
        for name in SPLITS:
            present = self.files.get(f"{name}.csv") is not None
            out[f"{name}_sha1"] = ids_hash(self.table(name)["id"].tolist()) if present else None
        return out

    def check_unchanged(self, during: str) -> None:
        """DataError when a writer holds the folder or its files no longer hold the snapshot's bytes."""
        shown = display_path(self.folder)
        pid = writer_pid(self.folder)
        if pid is not None:
            who = f"pid {pid}" if pid else "another process"
            raise DataError(f"{shown}: the split is being rewritten by {who} (`seglib data split`) while {during}; "
                            "nothing was written: run this again when it has finished")
        now = _read_files(self.folder)
        changed = [name for name in SPLIT_FILE_NAMES if now.get(name) != self.files.get(name)]
        if changed:
            raise DataError(f"{shown}: {', '.join(changed)} changed while {during} (a `seglib data split "
                            "--overwrite` meanwhile?); the result would mix two splits, so nothing was written: "
                            "run this again on the split as it is now")


def snapshot_splits(splits_dir: str | os.PathLike | None = None, *, during: str = "it was being read"
                    ) -> SplitSnapshot:
    """Read the split files of `splits_dir` (default data/splits) once, checked unchanged right after."""
    folder = Path(splits_dir) if splits_dir is not None else paths.splits_dir()
    snapshot = SplitSnapshot(folder, _read_files(folder))
    snapshot.check_unchanged(during)
    return snapshot
