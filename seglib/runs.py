"""A training run's folder: the one place that knows its file names, its state and how a name maps to it.

A run is named on the command line (`--run NAME`) and always lives in `runs/NAME/` (or `$SEGLIB_RUNS_DIR/NAME`):
a name is never looked up in the current folder. Python callers may pass a `Path` to use any folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from seglib.infra import locks, paths
from seglib.infra.errors import CheckpointError, ConfigError, SeglibError
from seglib.infra.values import load_settings_file

logger = logging.getLogger(__name__)

BEST, LAST = "best.pt", "last.pt"
CONFIG, HISTORY, SUMMARY = "config.yaml", "history.csv", "train_summary.json"
EVAL = "eval"
METRICS, PER_IMAGE, SWEEP = "metrics.json", "per_image.csv", "threshold_sweep.csv"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 100  # room for the suffixes made from it (RECIPE-foldK, .NAME.replaced) within a file name


def check_run_name(name) -> str:
    """A plain folder name (letters, digits, '.', '-', '_'; not starting with '.'; at most MAX_NAME_LENGTH
    characters), else a ConfigError."""
    # fullmatch: `$` would also match before a trailing newline, and "nl\n" would become a folder
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"run name {name!r}: use a plain name (letters, digits, '.', '-', '_'), "
                          "not a path; the run lives in runs/NAME/")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"run name {name[:20]!r}... ({len(name)} characters): use at most {MAX_NAME_LENGTH}")
    return name


def checkpoint_or_run(name: str) -> Path | Run:
    """What a command line's RUN_OR_CHECKPOINT names: a checkpoint file when it ends in `.pt` or is a file that
    exists, else the run runs/NAME (a plain name, else a ConfigError), which the caller asks for its checkpoint."""
    path = Path(name)
    if path.suffix == ".pt" or path.is_file():
        return path
    return Run.named(name)


class Run:
    """A run folder: `best.pt`, `last.pt`, `config.yaml`, `history.csv`, `train_summary.json`, `eval/<split>/`."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @classmethod
    def named(cls, name: str) -> Run:
        """runs/NAME (or $SEGLIB_RUNS_DIR/NAME): never the current folder."""
        return cls(paths.runs_dir() / check_run_name(name))

    @classmethod
    def resolve(cls, run: str | Path | Run) -> Run:
        """A Run as given, a Path as that folder, a str as a run name."""
        if isinstance(run, Run):
            return run
        if isinstance(run, Path):
            return cls(run)
        return cls.named(run)

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.dir.resolve() == other.dir.resolve()

    def __hash__(self) -> int:
        return hash(self.dir.resolve())

    @property
    def name(self) -> str:
        return self.dir.name

    # ------------------------------------------------------------------ files
    @property
    def best(self) -> Path:
        return self.dir / BEST

    @property
    def last(self) -> Path:
        return self.dir / LAST

    @property
    def config_file(self) -> Path:
        return self.dir / CONFIG

    @property
    def history_file(self) -> Path:
        return self.dir / HISTORY

    @property
    def summary_file(self) -> Path:
        return self.dir / SUMMARY

    def checkpoint(self, which: str = "best") -> Path:
        if which not in ("best", "last"):
            raise ConfigError(f"checkpoint {which!r}: expected 'best' or 'last'")
        return self.best if which == "best" else self.last

    @property
    def eval_root(self) -> Path:
        return self.dir / EVAL

    def eval_dir(self, split: str) -> Path:
        return self.eval_root / split

    def metrics_file(self, split: str) -> Path:
        return self.eval_dir(split) / METRICS

    @property
    def replaced_backup(self) -> Path:
        """Where the run being replaced (`--overwrite`) waits until its replacement has saved an epoch."""
        return self.dir.with_name(f".{self.name}.replaced")

    # ------------------------------------------------------------------ state
    @property
    def exists(self) -> bool:
        """The folder exists and holds something."""
        return self.dir.is_dir() and any(self.dir.iterdir())

    @property
    def trained(self) -> bool:
        """Training finished (completed, early-stopped or out of time): train_summary.json is written."""
        return self.summary_file.is_file()

    @property
    def resumable(self) -> bool:
        """Interrupted: an epoch is saved in last.pt but training has not finished."""
        return self.last.is_file() and not self.trained

    def state(self) -> str:
        """'new' (nothing there), 'trained', 'unfinished' (resumable) or 'other' (a folder without a checkpoint);
        a run left aside by a replacement killed before its first epoch is put back first (`recover`)."""
        self.recover()
        if not self.exists:
            return "new"
        if self.trained:
            return "trained"
        if self.resumable:
            return "unfinished"
        return "other"

    def config(self) -> dict:
        """The settings saved with the run (config.yaml), or a SeglibError when it cannot be read."""
        return load_settings_file(self.config_file, paths.display_path(self.config_file))

    def summary(self) -> dict | None:
        return read_json(self.summary_file)

    def metrics(self, split: str) -> dict | None:
        return read_json(self.metrics_file(split))

    def require(self, which: str = "best") -> Path:
        """The checkpoint file, or a SeglibError saying how to get it."""
        path = self.checkpoint(which)
        if not path.is_file():
            self.recover()
        if path.is_file():
            return path
        if self.replaced_backup.exists():
            raise CheckpointError(f"run {self.name}: being replaced by a training in progress (the previous run "
                                  f"waits in {paths.display_path(self.replaced_backup)} until the new one saves "
                                  "an epoch); wait for it to save one, then run this again")
        if not self.dir.is_dir():
            raise CheckpointError(f"run {self.name!r} not found ({paths.display_path(self.dir)} does not exist): "
                              f"train it with notebook 03 or `seglib train --run {self.name}`, or pass "
                              "--checkpoint PATH")
        raise CheckpointError(f"run {self.name} not trained yet: run notebook 03 or `seglib train --run {self.name}` "
                          f"(no {path.name} in {paths.display_path(self.dir)})")

    # ------------------------------------------------------------------ writers and recovery
    def lock(self):
        """Hold the run's lock (`.NAME.lock` beside it): one writer at a time; a second process is refused at once
        with a LockedError naming the holder's pid. A holder in this process may take it again."""
        return locks.reentrant(self.dir, f"run {paths.display_path(self.dir)}")

    def recover(self) -> None:
        """Settle what a replacement (`--overwrite`) killed before it could clean up left behind, unless a live
        process is writing the run: the run moved aside (`.NAME.replaced`) is put back when the replacement saved
        no epoch, else deleted (the replacement is the run now). Either way it is said in one warning."""
        backup = self.replaced_backup
        if not backup.exists():
            return
        try:
            with self.lock():
                self._settle_leftover()
        except locks.LockedError:
            return  # a live training is replacing the run: its own clean-up decides

    def _settle_leftover(self) -> None:
        backup = self.replaced_backup
        if not backup.exists():
            return
        if self.last.is_file():  # killed between its first saved epoch and deleting the old run
            shutil.rmtree(backup)
            logger.warning(f"{paths.display_path(self.dir)}: deleted {backup.name}, the run it replaced (the "
                           "replacement had saved an epoch before it was stopped)")
            return
        self._put_back()
        logger.warning(f"{paths.display_path(self.dir)}: put back the previous run from {backup.name} (a "
                       "replacement was stopped before its first epoch)")

    def _put_back(self) -> None:
        """The run moved aside back in place of the replacement's folder (which holds no saved epoch)."""
        if self.dir.is_dir():
            shutil.rmtree(self.dir)
        elif self.dir.exists():
            self.dir.unlink()
        os.replace(self.replaced_backup, self.dir)

    # ------------------------------------------------------------------ lifecycle (used by the engine)
    def nothing_to_resume(self) -> str:
        """Why --resume cannot continue this run, and what to do instead."""
        if not self.dir.is_dir():
            return (f"run {self.name!r} not found ({paths.display_path(self.dir)} does not exist): nothing to "
                    "resume; drop --resume to start it")
        return (f"{paths.display_path(self.dir)}: nothing to resume (no last.pt); drop --resume, or --overwrite "
                "to start again")

    def check_can_start(self, *, resume: bool, overwrite: bool, main: bool = True) -> None:
        """Refuse to touch an existing run unless asked to resume or to overwrite it (nothing is changed here,
        except the temporary files of a checkpoint write that a kill cut short, on resume)."""
        if resume:
            if not self.last.is_file():
                raise SeglibError(self.nothing_to_resume())
            if main:
                for stale in self.dir.glob(".*.pt.*.tmp"):
                    stale.unlink(missing_ok=True)
            return
        if self.exists and not overwrite:
            raise SeglibError(f"{paths.display_path(self.dir)}: run folder already exists; use --resume to "
                              "continue it, --overwrite to replace it, or another --run name")
        if self.dir.exists() and not self.dir.is_dir():
            raise SeglibError(f"{paths.display_path(self.dir)}: is a file, not a run folder")
        if main:
            from seglib.infra.io import (
                check_writable_dir,  # here: a CLI that only names a run imports no numpy
            )

            check_writable_dir(self.dir.parent)

    def start(self, *, overwrite: bool, main: bool = True) -> None:
        """Create the folder once the data, model and optimiser are built, so a failed start leaves nothing.

        With `overwrite` the old run is moved aside (`.NAME.replaced`), not deleted: it is deleted once the new
        run has saved its first epoch (`settle_replacement`), and put back if the new run fails before that.
        """
        if not main:
            return
        self._settle_leftover()  # the caller holds the lock
        if overwrite and self.dir.exists():
            os.replace(self.dir, self.replaced_backup)
        from seglib.infra.io import ensure_writable_dir

        ensure_writable_dir(self.dir)

    def settle_replacement(self, *, keep_new: bool, main: bool = True) -> None:
        """Once a replacement saved an epoch, delete the old run; if it failed before, put the old run back."""
        backup = self.replaced_backup
        if not main or not backup.exists():
            return
        if keep_new:
            shutil.rmtree(backup)
            return
        self._put_back()

    def abandon_start(self, *, new: bool, main: bool = True) -> None:
        """A start that saved no epoch (a crash, Ctrl-C): put the replaced run back, or remove the folder a `new`
        run created, so nothing is lost and nothing half-made is left behind."""
        if not main:
            return
        replaced = self.replaced_backup.exists()
        self.settle_replacement(keep_new=False, main=main)
        if new and not replaced and self.dir.is_dir() and not any(p.suffix == ".pt" for p in self.dir.iterdir()):
            shutil.rmtree(self.dir)

    def writing(self, *, fresh: bool, overwrite: bool = False, main: bool = True) -> RunWriting:
        """The folder while a training writes it, as a context manager (`RunWriting`)."""
        return RunWriting(self, fresh=fresh, overwrite=overwrite, main=main)

    def training_decision(self, retrain: bool) -> str:
        """What notebook 03 and the report runner do with this run: 'train', 'reuse', 'resume' or 'retrain'."""
        self.recover()
        if retrain:
            return "retrain" if self.exists else "train"
        state = self.state()
        if state == "trained":
            return "reuse"
        if state == "unfinished":
            return "resume"
        if state == "other":
            raise SeglibError(f"{paths.display_path(self.dir)}: the folder exists but holds no finished or "
                              "resumable run; pick another run name, or retrain to replace it")
        return "train"



class RunWriting:
    """A training's hold on its run folder. With `fresh`, the folder is created on entry (a run it replaces moved
    aside, not deleted); the training says `epoch_saved()` once a checkpoint is on disk. Leaving without one (an
    error, Ctrl-C, a signal) puts the replaced run back or removes the new folder; after one, the replaced run is
    deleted. `saved` says whether the run holds a saved epoch (always, for a resumed run)."""

    def __init__(self, run: Run, *, fresh: bool, overwrite: bool, main: bool):
        self.run, self.fresh, self.overwrite, self.main = run, fresh, overwrite, main
        self.created = fresh and not run.dir.exists()
        self.saved = not fresh

    def __enter__(self) -> RunWriting:
        if self.fresh:
            try:
                self.run.start(overwrite=self.overwrite, main=self.main)
            except BaseException:  # a signal even between moving the old run aside and creating the new folder
                self.run.abandon_start(new=self.created, main=self.main)
                raise
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            return
        if self.saved and issubclass(kind, KeyboardInterrupt):  # stopped after the first save, before the old
            self.run.settle_replacement(keep_new=True, main=self.main)  # run was deleted
        elif not self.saved:
            self.run.abandon_start(new=self.created, main=self.main)

    def epoch_saved(self) -> None:
        """A checkpoint is on disk: from now on a stop keeps the new run; after the first, the old one goes."""
        first, self.saved = not self.saved, True
        if first:
            self.run.settle_replacement(keep_new=True, main=self.main)


def read_json(path: Path) -> dict | None:
    """A JSON object from a file, or None when the file is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def same_checkpoint(metrics: dict, epoch, tta: bool, name: str = BEST) -> bool:
    """Was this evaluation made with the checkpoint file `name` at `epoch` and the same TTA setting?"""
    return (Path(str(metrics.get("checkpoint", ""))).name == name and metrics.get("checkpoint_epoch") == epoch
            and bool(metrics.get("tta")) == bool(tta))
