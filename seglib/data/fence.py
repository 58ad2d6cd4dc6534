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

from seglib.data.descriptions import registered
from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import refuse_writing_into


def data_folders() -> list[tuple[Path, str]]:
    """(folder, what it is) for every folder that holds data seglib reads."""
    folders = [(paths.splits_dir(), "the splits folder")]
    for folder, what in ((paths.derived_data_dir, "the folder of masks seglib derives (data/derived)"),
                         (paths.raw_data_dir, "the data folder (data/raw or $SEGLIB_DATA_DIR)")):
        try:
            folders.append((folder(), what))
        except SeglibError:  # a variable naming a file: the commands that read that folder say so
            continue
    for spec in registered(skip_unreadable=True).values():  # a broken description fences nothing: not readable
        try:
            what = f"a folder of the registered data set {spec.name!r}"
            folders += [(folder, what) for folder in spec.folders()]
            folders.append((spec.splits_dir(), f"the splits folder of {spec.name!r}"))
        except SeglibError:  # a path it cannot expand: the commands that read the set say so
            continue
    return folders


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
