"""VITON's person photos and parser label maps, for research use only: where its copy is, how it is fetched and
checked (the general fetch is `data.fetch_folders`; its description is data/datasets/viton.yaml).

Two parts: VITON's own test split (`test/image`, `test/image-parse-new`: CP-VTON+'s revised maps) and its training
photos (`train/image`, `train/image-parse`: the original maps, no neck class), of which the shared copy holds a
sample of VITON_TRAIN_N. A copy must hold every photo the committed split names; one with more training photos (the
whole archive) is fine: training and evaluation read the photos the split files name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from seglib.data.external import pairs_from_folders
from seglib.data.fetch_folders import FolderRecipe, fetch_folder
from seglib.data.mask_rules import PARSING
from seglib.infra import paths
from seglib.infra.errors import DataError

VITON = "viton"
VITON_FOLDER = "VITON"
# CP-VTON+'s data as redistributed in a public repository: its data/ folder holds test/ and train/.
VITON_URL = "https://github.com/sahiljit/cp-vton-plus/archive/refs/heads/master.zip"
ENV_VITON_DIR = "SEGLIB_VITON_DIR"  # a VITON copy to read (default data/external/VITON)
ENV_VITON_SOURCE = "SEGLIB_VITON_SOURCE"  # DIR, ZIP or URL used by `seglib data fetch viton`
TEST_PART = ("test/image", "test/image-parse-new")  # VITON's test split: photos, label maps
TRAIN_PART = ("train/image", "train/image-parse")  # the training sample: photos, original label maps
VITON_TEST_N = 2032
VITON_TRAIN_N = 3000  # the sample the committed split was made on (the archive holds more)
MAX_BYTES = 8 * 2**30  # the whole archive is downloaded; only the four folders are unpacked
MAX_MEMBERS = 50_000  # of those four folders


def viton_dir() -> Path:
    """$SEGLIB_VITON_DIR, else data/external/VITON."""
    return paths.env_folder(ENV_VITON_DIR, paths.external_data_dir() / VITON_FOLDER)


def split_ids() -> set[str]:
    """The ids of every photo the committed split names (empty where there is none)."""
    folder = paths.splits_dir() / VITON
    ids: set[str] = set()
    for path in (folder / f"{name}.csv" for name in paths.SPLITS):
        if path.is_file():
            ids |= set(pd.read_csv(path, dtype={"id": str}, usecols=["id"])["id"])
    return ids


def check_viton(root: Path) -> int:
    """Every photo of both parts has its label map, the test part has all VITON_TEST_N photos, the training part
    VITON_TRAIN_N or more, and every photo the committed split names is there; the pair count."""
    found = {}
    for (images, masks), expected in ((TEST_PART, VITON_TEST_N), (TRAIN_PART, VITON_TRAIN_N)):
        items = pairs_from_folders(root / images, root / masks, mask_rule=PARSING, name=VITON).items
        if len(items) != expected and (images == TEST_PART[0] or len(items) < expected):
            raise DataError(f"{root / images}: {len(items)} image/label pairs, expected {expected}"
                            f"{'' if images == TEST_PART[0] else ' or more'} (an incomplete copy?)")
        found.update(dict.fromkeys(items["id"].astype(str)))
    missing = sorted(split_ids() - found.keys())
    if missing:
        raise DataError(f"{root}: {len(missing)} photos of the committed split (data/splits/{VITON}/) are not in "
                        f"this copy (e.g. {', '.join(missing[:3])}); not the copy the split was made on")
    return len(found)


def fetch_viton(source: str | os.PathLike | None = None, dest_root: str | os.PathLike | None = None, *,
                progress: bool = True) -> tuple[Path, str]:
    """Put a checked copy of VITON at `dest_root/VITON` (default data/external); (path, message).

    `source`: a folder (VITON, the folder holding it, or CP-VTON+'s data/ folder), a .zip or an http(s) URL;
    default $SEGLIB_VITON_SOURCE, else VITON_URL. Only the two parts' four folders are taken."""
    recipe = FolderRecipe("VITON", VITON_FOLDER, VITON_URL, ENV_VITON_SOURCE, TEST_PART[0], check_viton,
                          folders=(*TEST_PART, *TRAIN_PART), max_bytes=MAX_BYTES, max_members=MAX_MEMBERS)
    return fetch_folder(recipe, source, dest_root, progress=progress)


__all__ = ["ENV_VITON_DIR", "ENV_VITON_SOURCE", "VITON", "check_viton", "fetch_viton", "viton_dir"]
