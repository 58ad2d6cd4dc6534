"""External labelled image/mask pairs, for measuring generalisation only (never for training or choosing).

Three ways to name them: the Penn-Fudan pedestrian database (`pennfudan`: its folder from $SEGLIB_PENNFUDAN_DIR,
else `data/external/PennFudanPed`, put there by `seglib data fetch-pennfudan`), a CSV with `image,mask` columns
(paths relative to the CSV), or an image folder and a mask folder matched by file stem (`<stem><suffix>.png`).

Masks are read by a rule: `binary` (0/255 or 0/1, as in our data set) or `nonzero` (instance ids, e.g. Penn-Fudan's
0 = background, 1..N = one id per pedestrian: person = value > 0).

A set is identified by its content (`PairSet.content_sha1`: a hash of its ids, the bytes of every image and mask
and its mask rule), never by a file name alone: a CSV or folder gets the name `<stem>-<first 8 hex digits>`, so
two different `ok.csv` files are two sets, and only the registered Penn-Fudan copy is called `pennfudan` (a user
file named pennfudan.csv is `pennfudan-<hash>`, never presented as the Penn-Fudan database).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seglib import config
from seglib.config import user_path
from seglib.data.dataset import load_pair
from seglib.data.fetch import (
    DEFAULT_MAX_BYTES,
    DOWNLOAD_TIMEOUT_S,
    classify_source,
    download,
    refuse_fetch_into,
    safe_extract_zip,
)
from seglib.data.mask_rules import MaskRule
from seglib.errors import DataError
from seglib.io import NewFolder

PENNFUDAN = "pennfudan"
PENNFUDAN_FOLDER = "PennFudanPed"
# The authors' archive (the one the PyTorch detection tutorial downloads).
PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
PENNFUDAN_CITATION = "the Penn-Fudan pedestrian database (Wang, Shi, Song, Shen, ACCV 2007)"
PENNFUDAN_N = 170


@dataclass(frozen=True)
class PairSet:
    """Named image/mask pairs (`items`: id, image_path, mask_path) and how their masks are read."""

    name: str
    items: pd.DataFrame
    mask_rule: str = "binary"
    source: str = ""
    registered: bool = False  # the Penn-Fudan database as `seglib data fetch-pennfudan` puts it, not a user's file
    dataset: str = ""  # the registered set these photos belong to (its ids), where they do

    def load(self, image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 at the mask's size, mask uint8 0/1): the same contract as `load_pair`."""
        if self.mask_rule == "binary":
            return load_pair(image_path, mask_path)
        return load_pair(image_path, mask_path, MaskRule.parse(self.mask_rule))

    @property
    def ids_sha1(self) -> str:
        return hashlib.sha1(",".join(self.items["id"]).encode()).hexdigest()[:12]

    @functools.cached_property
    def content_sha1(self) -> str:
        """Short hash of what is scored: each id with the bytes of its image and mask, and the mask rule."""
        return content_hash(self.items, self.mask_rule)


def content_hash(items: pd.DataFrame, mask_rule: str) -> str:
    """Short hash of a pairs table's ids, the bytes of its images and masks, and the mask rule."""
    digest = hashlib.sha1(f"rule:{mask_rule}\0".encode())
    for row in items.itertuples(index=False):
        digest.update(f"{row.id}\0".encode())
        for path in (row.image_path, row.mask_path):
            try:
                with open(path, "rb") as fh:
                    digest.update(hashlib.file_digest(fh, "sha1").digest())
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()[:12]


def _content_name(stem: str, items: pd.DataFrame, mask_rule: str) -> str:
    """`<stem>-<8 hex digits of the content hash>`: a name two different sets never share."""
    return f"{stem.lower()}-{content_hash(items, mask_rule)[:8]}"


def _check_rule(rule: str) -> str:
    return MaskRule.parse(rule).text


def pairs_from_folders(images_dir: str | Path, masks_dir: str | Path, *, mask_suffix: str = "",
                       mask_rule: str = "binary", name: str | None = None) -> PairSet:
    """Every image in `images_dir` with the mask `masks_dir/<stem><mask_suffix>.png`; a missing mask is an error."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found")
    images = sorted(p for p in images_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise DataError(f"{images_dir}: no .png/.jpg images")
    rows, missing = [], []
    for image in images:
        mask = masks_dir / f"{image.stem}{mask_suffix}.png"
        (rows if mask.is_file() else missing).append((image.stem, image, mask))
    if missing:
        raise DataError(f"{missing[0][2]}: mask not found for {missing[0][1].name}"
                        f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    items = pd.DataFrame(rows, columns=["id", "image_path", "mask_path"])
    rule = _check_rule(mask_rule)
    return PairSet(name or _content_name(images_dir.name, items, rule), items, rule, str(images_dir))


def pairs_from_csv(csv_path: str | Path, *, mask_rule: str = "binary", name: str | None = None) -> PairSet:
    """Pairs listed in a CSV with `image` and `mask` columns (paths relative to the CSV's folder)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: pairs file not found")
    try:
        table = pd.read_csv(csv_path, dtype=str)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV ({exc})") from None
    if not {"image", "mask"} <= set(table.columns):
        raise DataError(f"{csv_path}: needs the columns image and mask (found {', '.join(table.columns)})")
    table = table.dropna(subset=["image", "mask"])
    if table.empty:
        raise DataError(f"{csv_path}: no pairs listed")
    root = csv_path.parent
    paths = [(root / i, root / m) for i, m in zip(table["image"], table["mask"], strict=True)]
    absent = [p for pair in paths for p in pair if not p.is_file()]
    if absent:
        raise DataError(f"{absent[0]}: listed in {csv_path.name} but not found"
                        f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}")
    ids = table["id"] if "id" in table else [Path(i).stem for i, _ in paths]
    items = pd.DataFrame({"id": list(ids), "image_path": [i for i, _ in paths], "mask_path": [m for _, m in paths]})
    if items["id"].duplicated().any():
        raise DataError(f"{csv_path}: ids are not unique (add an id column)")
    repeated = items["image_path"].map(lambda p: Path(p).resolve()).duplicated()
    if repeated.any():
        raise DataError(f"{csv_path}: {items['image_path'][repeated].iloc[0]} is listed more than once; list each "
                        "photo once (a repeated row would be scored twice)")
    rule = _check_rule(mask_rule)
    return PairSet(name or _content_name(csv_path.stem, items, rule), items, rule, str(csv_path))


def pennfudan_dir() -> Path:
    """$SEGLIB_PENNFUDAN_DIR, else data/external/PennFudanPed."""
    value = os.environ.get(config.ENV_PENNFUDAN_DIR, "").strip()
    return user_path(value) if value else config.external_data_dir() / PENNFUDAN_FOLDER


def pennfudan(root: str | Path | None = None) -> PairSet:
    """The Penn-Fudan pedestrians: PNGImages/<stem>.png with PedMasks/<stem>_mask.png (instance ids)."""
    root = Path(root) if root is not None else pennfudan_dir()
    if not (root / "PNGImages").is_dir():
        raise DataError(f"{root}: no Penn-Fudan copy here (PNGImages/ not found); get it with `seglib data "
                        f"fetch-pennfudan` ({PENNFUDAN_URL}) or point ${config.ENV_PENNFUDAN_DIR} at a copy")
    pairs = pairs_from_folders(root / "PNGImages", root / "PedMasks", mask_suffix="_mask", mask_rule="nonzero",
                               name=PENNFUDAN)
    return PairSet(PENNFUDAN, pairs.items, "nonzero", PENNFUDAN_CITATION, registered=True, dataset=PENNFUDAN)


def external_set(spec: str) -> PairSet:
    """`pennfudan`, a pairs CSV (`PATH.csv`), or `IMAGES_DIR:MASKS_DIR` (same stems, binary masks); any other
    registered set by name: `data.registry.scored_set`."""
    if spec == PENNFUDAN:
        return pennfudan()
    if spec.lower().endswith(".csv"):
        return pairs_from_csv(spec)
    if ":" in spec:
        images, masks = spec.split(":", 1)
        return pairs_from_folders(images, masks)
    raise DataError(f"external set {spec!r}: give pennfudan, a pairs CSV (image,mask columns) or IMAGES:MASKS")


def fetch_pennfudan(source: str | os.PathLike | None = None, dest_root: str | os.PathLike | None = None, *,
                    progress: bool = True) -> tuple[Path, str]:
    """Put a checked copy of Penn-Fudan at `dest_root/PennFudanPed` (default data/external); (path, message).

    `source`: a folder (PennFudanPed or its parent), a .zip or an http(s) URL; default $SEGLIB_PENNFUDAN_SOURCE,
    else the authors' archive. Already present and complete: nothing to do. A failed fetch leaves nothing.
    """
    dest_root = user_path(dest_root) if dest_root is not None else config.external_data_dir()
    dest = dest_root / PENNFUDAN_FOLDER
    if dest.exists():
        n = len(_check_pennfudan(dest).items)
        return dest, f"{PENNFUDAN_FOLDER} already present at {config.display_path(dest)} ({n} pairs); nothing to do"
    src = str(source or os.environ.get(config.ENV_PENNFUDAN_SOURCE, "").strip() or PENNFUDAN_URL)
    kind, where = classify_source(src)
    refuse_fetch_into(dest_root, Path(where) if kind == "dir" else None, "the Penn-Fudan folder it copies from")
    with NewFolder(dest_root) as folder:
        work = Path(tempfile.mkdtemp(dir=dest_root, prefix=".fetch-"))
        try:
            if kind == "dir":
                root = Path(where)
                root = root if (root / "PNGImages").is_dir() else root / PENNFUDAN_FOLDER
                staged = work / PENNFUDAN_FOLDER
                shutil.copytree(root, staged, ignore=shutil.ignore_patterns(".*"))
                how = f"copied from {root}"
            else:
                zip_path = Path(where) if kind == "zip" else work / "download.zip"
                if kind == "url":
                    download(str(where), zip_path, max_bytes=DEFAULT_MAX_BYTES, timeout=DOWNLOAD_TIMEOUT_S,
                             progress=progress)
                safe_extract_zip(zip_path, work / "unpacked", shown=src)
                staged = work / "unpacked" / PENNFUDAN_FOLDER
                how = f"{'downloaded' if kind == 'url' else 'extracted'} from {src}"
            n = len(_check_pennfudan(staged).items)
            os.rename(staged, dest)
        except OSError as exc:
            folder.rollback()
            raise DataError(f"{exc.filename or src}: Penn-Fudan fetch failed ({exc.strerror or exc})") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest, f"{PENNFUDAN_FOLDER}: {how} to {config.display_path(dest)} ({n} image/mask pairs checked)"


def _check_pennfudan(root: Path) -> PairSet:
    """Every image has its mask, and all PENNFUDAN_N of them are there."""
    pairs = pennfudan(root)
    if len(pairs.items) != PENNFUDAN_N:
        raise DataError(f"{root}: {len(pairs.items)} image/mask pairs, expected {PENNFUDAN_N} (an incomplete copy?)")
    return pairs
