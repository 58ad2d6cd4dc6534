"""One fence for every write: no command writes into a folder that seglib reads data from.

The fenced folders are each registered set's photo and mask folders (a pairs CSV's photo and mask folders, a
listing's data set folder, a COCO set's photos and derived masks), the folders seglib derives or keeps data in
(`data/derived`, the splits folders, the fetched data folder), and whatever the command itself reads. Writing
into one of them (or below it) is refused with one line, even with `--overwrite`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import refuse_writing_into


def _specs():
    """Every description that can be read (a broken one fences nothing: its folders are not known)."""
    from seglib.data.registry import read_spec

    found, folders = {}, [paths.BUILTIN_DATASETS_DIR]
    try:
        folders.append(paths.datasets_dir())
    except SeglibError:  # $SEGLIB_DATASETS_DIR naming a file: the built-in sets are fenced all the same
        pass
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                found.setdefault(path.stem, read_spec(path))
            except DataError:
                continue
    return found.values()


def _pairs_folders(csv_path: Path) -> set[Path]:
    """The folders holding the photos and masks a pairs CSV lists (relative to the CSV's folder)."""
    import pandas as pd

    try:
        table = pd.read_csv(csv_path, dtype=str)
    except (OSError, ValueError):
        return set()
    names = [v for column in ("image", "mask") if column in table for v in table[column].dropna()]
    return {(csv_path.parent / name).parent for name in names}


def data_folders() -> list[tuple[Path, str]]:
    """(folder, what it is) for every folder that holds data seglib reads."""
    folders = [(paths.splits_dir(), "the splits folder")]
    for folder, what in ((paths.derived_data_dir, "the folder of masks seglib derives (data/derived)"),
                         (paths.raw_data_dir, "the data folder (data/raw or $SEGLIB_DATA_DIR)")):
        try:
            folders.append((folder(), what))
        except SeglibError:  # a variable naming a file: the commands that read that folder say so
            continue
    for spec in _specs():
        try:
            folders += _set_folders(spec)
        except SeglibError:  # a path it cannot expand: the commands that read the set say so
            continue
    return folders


def _set_folders(spec) -> list[tuple[Path, str]]:
    """The folders of one registered set: its photos and masks, and its splits."""
    what = f"a folder of the registered data set {spec.name!r}"
    if spec.kind == "listing":
        found = [(spec.path(spec.root), what)]
    elif spec.kind == "pairs":
        found = [(folder, what) for folder in sorted(_pairs_folders(spec.path(spec.pairs)))]
    else:
        found = [(spec.path(spec.images), what), (spec.path(spec.masks), what)]
    return [*found, (spec.splits_dir(), f"the splits folder of {spec.name!r}")]


def refuse_data_folders(out: str | os.PathLike, inputs: Iterable[tuple[Path | None, str]] = (), *,
                        option: str = "--out") -> None:
    """A SeglibError, one line, when the output folder `out` is (inside) a data folder or one of `inputs`.

    A set whose photos lie in the project's folder, a home folder or the root itself fences that folder alone,
    not everything below it."""
    wide = {paths.PROJECT_ROOT.resolve(), Path.home().resolve(), Path("/")}
    found = data_folders()
    refuse_writing_into(out, [*inputs, *((f, what) for f, what in found if Path(f).resolve() not in wide)],
                        option=option)
    for folder, what in found:
        if Path(folder).resolve() in wide and Path(out).resolve() == Path(folder).resolve():
            raise SeglibError(f"{out}: is {what}; refusing to write there, even with --overwrite; choose another "
                              f"{option}")


__all__ = ["data_folders", "refuse_data_folders"]
