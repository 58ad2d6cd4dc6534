"""Paths and environment settings, defined once; everything else takes them as defaults."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from seglib.infra.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Environment variables (documented in the README's table).
ENV_DATASET_SOURCE = "SEGLIB_DATASET_SOURCE"  # DIR, ZIP or URL used by `seglib data fetch`
ENV_DATA_DIR = "SEGLIB_DATA_DIR"  # where the fetched data set lives (default data/raw)
ENV_RUNS_DIR = "SEGLIB_RUNS_DIR"  # where training runs go (default runs/)
ENV_REPORTS_DIR = "SEGLIB_REPORTS_DIR"  # where `seglib report` writes (default reports/)
ENV_PROFILE = "SEGLIB_PROFILE"  # default training profile for notebooks (CI sets "smoke")
ENV_DATASETS_DIR = "SEGLIB_DATASETS_DIR"  # where `seglib data add` registers data sets (default data/datasets)

# Names the command line needs before anything heavy is imported (`seglib --help` imports no numpy or torch).
SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")  # the splits a model is scored on (train is what it saw)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp",  # what a folder scan takes
                  ".heic", ".heif", ".avif")  # phones' and browsers' newer formats (infra.io reads them)
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")  # what `seglib predict` takes as video
JUPYTER_KERNEL = "seglib"  # the kernel `make setup` registers; papermill and nbval run the notebooks in it

DATASET_NAME = "Human-Segmentation-Dataset-master"
DATASET_URL = "https://github.com/parth1620/Human-Segmentation-Dataset-master/archive/refs/heads/master.zip"
# GitHub archives are not byte-stable; the content is verified instead (train.csv + every listed file).
TRAIN_CSV_SHA256 = "0f9f3999cdbd8ba6ee454daa5712d5ac18c72d8e58f6a13ebe6feb54f3a27609"


def user_path(value: str | os.PathLike) -> Path:
    """A path as the user typed it, `~` and `~user` expanded; an unknown user is a one-line ConfigError."""
    try:
        return Path(value).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory"
        raise ConfigError(f"{value}: no home folder for '{str(value).split('/')[0]}'") from None


def env_folder(name: str, default: Path) -> Path:
    """The folder environment variable `name` names (`~` expanded, resolved), else `default`. A value naming a
    file, a path under a file or a symbolic link loop is a one-line ConfigError saying which variable; a folder
    that does not exist yet is fine (commands that write create it; `missing_env_folder` tells readers)."""
    value = os.environ.get(name)
    if not value or not value.strip():
        return default
    try:
        path = user_path(value).resolve()
    except ConfigError as exc:  # an unknown ~user
        raise ConfigError(f"${name}={exc}") from None
    except (RuntimeError, OSError):  # pathlib: "Symlink loop from ..."
        raise ConfigError(f"${name}={value}: symbolic link loop; point it at a folder") from None
    blocker = _existing_part(path)
    if not blocker.is_dir():
        where = "is a file" if blocker == path else f"is under {blocker}, which is a file"
        raise ConfigError(f"${name}={value}: {where}, not a folder; point it at a folder (or unset it)")
    return path


def _existing_part(path: Path) -> Path:
    """`path` itself, or its deepest ancestor that exists."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def missing_env_folder(name: str) -> str | None:
    """A note when environment variable `name` names a folder that does not exist (None when it is unset or the
    folder is there): what a command that reads from it should say rather than show nothing."""
    value = os.environ.get(name)
    if not value or not value.strip() or env_folder(name, Path()).is_dir():
        return None
    return f"${name}={value}: no such folder"


def link_problem(path: Path) -> str | None:
    """Why a folder entry leads to no file: 'symbolic link loop' or 'broken link to TARGET'; None otherwise."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"broken link to {os.readlink(path)}" if os.path.islink(path) else None
    except OSError as exc:
        return "symbolic link loop" if exc.errno == errno.ELOOP else None
    return None


def raw_data_dir() -> Path:
    """Folder that holds the fetched data set folder (`data/raw` unless SEGLIB_DATA_DIR says otherwise)."""
    return env_folder(ENV_DATA_DIR, PROJECT_ROOT / "data" / "raw")


def external_data_dir() -> Path:
    """Folder for external evaluation sets (`data/external`, ignored by git)."""
    return PROJECT_ROOT / "data" / "external"


def splits_dir() -> Path:
    return PROJECT_ROOT / "data" / "splits"


BUILTIN_DATASETS_DIR = PROJECT_ROOT / "data" / "datasets"  # the descriptions of the built-in sets (committed)


def datasets_dir() -> Path:
    """Where `seglib data add` writes a set's description (`data/datasets` unless SEGLIB_DATASETS_DIR says
    otherwise); the built-in sets are always read from BUILTIN_DATASETS_DIR."""
    return env_folder(ENV_DATASETS_DIR, BUILTIN_DATASETS_DIR)


def derived_data_dir() -> Path:
    """Masks made from another format (COCO JSON) by `seglib data add`: `derived/` beside the descriptions."""
    return datasets_dir().parent / "derived"


def runs_dir() -> Path:
    return env_folder(ENV_RUNS_DIR, PROJECT_ROOT / "runs")


def reports_dir() -> Path:
    return env_folder(ENV_REPORTS_DIR, PROJECT_ROOT / "reports")


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def display_path(path: str | os.PathLike) -> str:
    """A path as written into reports and messages: relative to the project when inside it (so committed
    outputs hold no machine's absolute paths), else absolute."""
    try:
        path = Path(path).expanduser()
    except RuntimeError:  # '~nobody': shown as typed
        return str(path)
    try:
        return Path(os.path.abspath(path)).relative_to(PROJECT_ROOT).as_posix() or "."
    except ValueError:
        return str(Path(os.path.abspath(path)))
