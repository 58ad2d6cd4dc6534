"""A registered set's folder fetched from a folder, a .zip or an http(s) URL: checked, staged, renamed into place.

One routine for every set that `seglib data fetch NAME` gets (Penn-Fudan, VITON); a `FolderRecipe` says what is
particular to a set: the folder it goes to, where it is published, the folder that marks its root in a source,
which of its folders are taken, and how the staged copy is checked before it is moved into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seglib.data.fetch import (
    DEFAULT_MAX_BYTES,
    DOWNLOAD_TIMEOUT_S,
    MAX_ZIP_MEMBERS,
    classify_source,
    download,
    refuse_fetch_into,
    safe_extract_zip,
)
from seglib.infra import paths
from seglib.infra.errors import DataError
from seglib.infra.io import NewFolder
from seglib.infra.paths import user_path


@dataclass(frozen=True)
class FolderRecipe:
    """What is particular to one fetchable set."""

    title: str  # how messages name it
    folder: str  # the folder it is put in, under data/external (or --dest)
    url: str  # where it is published (a zip)
    env_source: str  # the variable naming a local copy (DIR, ZIP or URL)
    marker: str  # a folder inside the set's root: how its root is found in a source
    check: Callable[[Path], int]  # the staged copy checked: its pair count, or a DataError
    folders: tuple[str, ...] = ()  # the folders taken ('/'-separated, relative to the root); () = everything
    max_bytes: int = DEFAULT_MAX_BYTES  # the download and the unpacked files taken
    max_members: int = MAX_ZIP_MEMBERS


def fetch_folder(recipe: FolderRecipe, source=None, dest_root=None, *, progress: bool = True) -> tuple[Path, str]:
    """Put a checked copy of the set at `dest_root/recipe.folder` (default data/external); (path, message).

    `source`: a folder (the set's root or the folder holding it), a .zip or an http(s) URL; default
    $`recipe.env_source`, else `recipe.url`. Already present and complete: nothing to do. A failed fetch leaves
    nothing behind."""
    # 1. already there, or where it comes from
    dest_root = user_path(dest_root) if dest_root is not None else paths.external_data_dir()
    dest = dest_root / recipe.folder
    if dest.exists():
        n = recipe.check(dest)
        return dest, f"{recipe.folder} already present at {paths.display_path(dest)} ({n} pairs); nothing to do"
    src = str(source or os.environ.get(recipe.env_source, "").strip() or recipe.url)
    kind, where = classify_source(src)
    refuse_fetch_into(dest_root, Path(where) if kind == "dir" else None, f"the {recipe.title} folder it copies from")
    # 2. staged beside the destination, checked, then renamed into place
    with NewFolder(dest_root) as folder:
        work = Path(tempfile.mkdtemp(dir=dest_root, prefix=".fetch-"))
        try:
            staged = work / recipe.folder
            if kind == "dir":
                root = _root(recipe, [Path(where), Path(where) / recipe.folder], src)
                _copy(recipe, root, staged)
                how = f"copied from {root}"
            else:
                zip_path = Path(where) if kind == "zip" else work / "download.zip"
                if kind == "url":
                    download(str(where), zip_path, max_bytes=recipe.max_bytes, timeout=DOWNLOAD_TIMEOUT_S,
                             progress=progress)
                safe_extract_zip(zip_path, work / "unpacked", max_bytes=recipe.max_bytes,
                                 max_members=recipe.max_members, shown=src, select=_member_filter(recipe))
                root = _root(recipe, _folders_within(work / "unpacked", depth=4), src)
                _copy(recipe, root, staged)
                how = f"{'downloaded' if kind == 'url' else 'extracted'} from {src}"
            n = recipe.check(staged)
            os.rename(staged, dest)
        except OSError as exc:
            folder.rollback()
            raise DataError(f"{exc.filename or src}: {recipe.title} fetch failed ({exc.strerror or exc})") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest, f"{recipe.folder}: {how} to {paths.display_path(dest)} ({n} image/mask pairs checked)"


def _root(recipe: FolderRecipe, candidates: list[Path], shown: str) -> Path:
    """The first candidate holding the recipe's marker folder, or a DataError naming what was looked for."""
    found = next((c for c in candidates if (c / recipe.marker).is_dir()), None)
    if found is None:
        raise DataError(f"{shown}: no {recipe.title} copy found ({recipe.marker}/ neither in it nor in a "
                        f"{recipe.folder}/ inside it)")
    return found


def _folders_within(top: Path, depth: int) -> list[Path]:
    """`top` and the folders below it down to `depth` levels, shallow ones first (an archive's root is wrapped)."""
    found, level = [top], [top]
    for _ in range(depth):
        level = sorted(c for f in level for c in f.iterdir() if c.is_dir() and not c.name.startswith("."))
        found += level
    return found


def _copy(recipe: FolderRecipe, root: Path, staged: Path) -> None:
    """The recipe's folders (everything when it names none), each one's files, hidden ones aside."""
    if not recipe.folders:
        shutil.copytree(root, staged, ignore=shutil.ignore_patterns(".*"))
        return
    for name in recipe.folders:
        source = root / name
        if not source.is_dir():
            raise DataError(f"{source}: folder not found; not a complete {recipe.title} copy")
        target = staged / name
        target.mkdir(parents=True)
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copyfile(path, target / path.name)


def _member_filter(recipe: FolderRecipe) -> Callable[[str], bool] | None:
    """Which archive members are unpacked: a file directly inside one of the recipe's folders (at any depth of
    the archive: its root is found after); None: every member."""
    if not recipe.folders:
        return None
    wanted = [tuple(name.split("/")) for name in recipe.folders]

    def select(member: str) -> bool:
        parts = PurePosixPath(member.replace("\\", "/")).parts
        return any(len(parts) > len(folder) and parts[-1 - len(folder):-1] == folder for folder in wanted)

    return select


__all__ = ["FolderRecipe", "fetch_folder"]
