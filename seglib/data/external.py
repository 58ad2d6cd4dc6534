"""External labelled image/mask pairs, for measuring generalisation only (never for training or choosing).

Three ways to name them: the Penn-Fudan pedestrian database (`pennfudan`: its folder from $SEGLIB_PENNFUDAN_DIR,
else `data/external/PennFudanPed`, put there by `seglib data fetch pennfudan`), a CSV with `image,mask` columns
(paths relative to the CSV), or an image folder and a mask folder matched by file stem: every photo seglib decodes
(`config.IMAGE_SUFFIXES`) with the lossless mask `<stem><suffix>` + one of MASK_SUFFIXES (a lossy JPEG or WebP
would blur the labels). What a folder scan leaves out (a file of another kind, a mask without a photo, a folder, a
symbolic link loop or a broken link; hidden files aside) is recorded in `PairSet.left_out`, never dropped unseen.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.data.fetch_folders import FolderRecipe, fetch_folder
from seglib.data.mask_rules import MaskRule
from seglib.infra import paths
from seglib.infra.errors import DataError

PENNFUDAN = "pennfudan"
PENNFUDAN_FOLDER = "PennFudanPed"
# The authors' archive (the one the PyTorch detection tutorial downloads).
PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
PENNFUDAN_CITATION = "the Penn-Fudan pedestrian database (Wang, Shi, Song, Shen, ACCV 2007)"
PENNFUDAN_N = 170
ENV_PENNFUDAN_DIR = "SEGLIB_PENNFUDAN_DIR"  # a Penn-Fudan copy to evaluate on (default data/external/PennFudanPed)
ENV_PENNFUDAN_SOURCE = "SEGLIB_PENNFUDAN_SOURCE"  # DIR, ZIP or URL used by `seglib data fetch pennfudan`
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".gif")  # lossless: a mask's stored values are its labels


@dataclass(frozen=True)
class PairSet:
    """Named image/mask pairs (`items`: id, image_path, mask_path) and how their masks are read."""

    name: str
    items: pd.DataFrame
    mask_rule: str = "binary"
    source: str = ""
    registered: bool = False  # the Penn-Fudan database as `seglib data fetch pennfudan` puts it, not a user's file
    dataset: str = ""  # the registered set these photos belong to (its ids), where they do
    left_out: tuple[tuple[str, str], ...] = ()  # (path, why) of each file a folder scan left out, hidden ones aside

    def load(self, image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 at the mask's size, mask uint8 0/1): the same contract as `data.dataset.load_pair`."""
        from seglib.data.dataset import load_pair  # torch comes with it: not imported to name a set's folders

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
    """Every photo in `images_dir` (paths.IMAGE_SUFFIXES, any letter case) with its mask
    `masks_dir/<stem><mask_suffix>` + one of MASK_SUFFIXES; a missing mask, or two, is an error. Every other file
    of the two folders (hidden ones aside) is named with the reason in `left_out`."""
    # 1. both folders, each file sorted into photos, masks by stem, and left out
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    image_files, left_out = _folder_files(images_dir)
    mask_files, mask_left_out = _folder_files(masks_dir)
    photos = [p for p in image_files if p.suffix.lower() in paths.IMAGE_SUFFIXES]
    if not photos:
        raise DataError(f"{images_dir}: no images ({'/'.join(paths.IMAGE_SUFFIXES)})")
    masks: dict[str, list[Path]] = {}
    for path in mask_files:
        masks.setdefault(path.stem, []).append(path)
    # 2. each photo's one lossless mask
    rows, missing = [], []
    for image in photos:
        found = [p for p in masks.get(f"{image.stem}{mask_suffix}", []) if p.suffix.lower() in MASK_SUFFIXES]
        if len(found) > 1:
            raise DataError(f"{image}: two masks ({', '.join(p.name for p in found)}) in {masks_dir}; keep one")
        if found:
            rows.append((image.stem, image, found[0]))
        else:
            missing.append(image)
    if missing:
        raise DataError(_missing_mask(missing, masks_dir, mask_suffix, masks))
    # 3. what was left out: other files of the photo folder, masks of no photo and other files of the mask folder
    left_out += [(str(p), "not an image") for p in image_files if p.suffix.lower() not in paths.IMAGE_SUFFIXES]
    if masks_dir.resolve() != images_dir.resolve():  # one folder for both: its files are counted once, above
        used = {mask for _, _, mask in rows}
        left_out += mask_left_out + [(str(p), _why_not_a_mask(p)) for p in mask_files if p not in used]
    items = pd.DataFrame(rows, columns=["id", "image_path", "mask_path"])
    rule = _check_rule(mask_rule)
    return PairSet(name or _content_name(images_dir.name, items, rule), items, rule, str(images_dir),
                   left_out=tuple(sorted(left_out)))


def _folder_files(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(the files of `folder` sorted by name, (path, why) of each other entry: a folder, a symbolic link loop, a
    broken link, a special file); hidden entries are neither."""
    if not folder.is_dir():
        raise DataError(f"{folder}: {'is a file, not a folder' if folder.exists() else 'folder not found'}")
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder}: cannot read ({exc.strerror or exc})") from None
    files, left_out = [], []
    for path in entries:
        why = paths.link_problem(path) or ("a folder (subfolders are not searched)" if path.is_dir() else
                                            None if path.is_file() else "not a regular file")
        if why:
            left_out.append((str(path), why))
        else:
            files.append(path)
    return files, left_out


def _why_not_a_mask(path: Path) -> str:
    if path.suffix.lower() in MASK_SUFFIXES:
        return "a mask without a photo"
    if path.suffix.lower() in paths.IMAGE_SUFFIXES:
        return f"not a lossless mask ({'/'.join(MASK_SUFFIXES)})"
    return "not a mask"


def _missing_mask(photos: list[Path], masks_dir: Path, mask_suffix: str, masks: dict[str, list[Path]]) -> str:
    """The error for photos without a mask: the first one's expected mask, the count of the others, and a lossy
    file that was found in the mask's place."""
    first = photos[0]
    more = f" (and {len(photos) - 1} more)" if len(photos) > 1 else ""
    lossy = [p.name for p in masks.get(f"{first.stem}{mask_suffix}", [])]
    hint = f"; {lossy[0]} is there, but a mask must be lossless ({'/'.join(MASK_SUFFIXES)})" if lossy else ""
    return f"{masks_dir / f'{first.stem}{mask_suffix}.png'}: mask not found for {first.name}{more}{hint}"


def left_out_summary(left_out, shown: int = 3) -> str:
    """'left out N files: a.txt (not an image), ..., and M more' of a scan's `left_out` (empty when none)."""
    if not left_out:
        return ""
    named = ", ".join(f"{Path(path).name} ({why})" for path, why in list(left_out)[:shown])
    rest = len(left_out) - shown
    return (f"left out {len(left_out)} file{'s' if len(left_out) != 1 else ''}: {named}"
            f"{f', and {rest} more' if rest > 0 else ''}")


def pairs_from_csv(csv_path: str | Path, *, mask_rule: str = "binary", name: str | None = None) -> PairSet:
    """Pairs listed in a CSV with `image` and `mask` columns (paths relative to the CSV's folder), and optionally
    `id` (else a photo's file stem). Blank lines are skipped; a row with a photo and no mask (or the reverse), a
    photo listed twice or an id given twice is an error naming its lines."""
    # 1. the table, each row with its line number
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: pairs file not found")
    try:
        table = pd.read_csv(csv_path, dtype=str, skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV ({exc})") from None
    if not {"image", "mask"} <= set(table.columns):
        raise DataError(f"{csv_path}: needs the columns image and mask (found {', '.join(table.columns)})")
    table["line"] = table.index + 2
    table = table.dropna(subset=["image", "mask"], how="all")
    _check_rows(csv_path, table)
    if table.empty:
        raise DataError(f"{csv_path}: no pairs listed")
    # 2. every listed file is there
    root = csv_path.parent
    listed = [(root / i, root / m) for i, m in zip(table["image"], table["mask"], strict=True)]
    absent = [p for pair in listed for p in pair if not p.is_file()]
    if absent:
        why = paths.link_problem(absent[0])
        raise DataError(f"{absent[0]}: listed in {csv_path.name} but {f'is a {why}' if why else 'not found'}"
                        f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}")
    # 3. each photo once, each id once
    ids = list(table["id"]) if "id" in table else [Path(i).stem for i, _ in listed]
    items = pd.DataFrame({"id": ids, "image_path": [i for i, _ in listed], "mask_path": [m for _, m in listed],
                          "line": list(table["line"])})
    _check_once(csv_path, items, "id" in table)
    rule = _check_rule(mask_rule)
    items = items.drop(columns="line")
    return PairSet(name or _content_name(csv_path.stem, items, rule), items, rule, str(csv_path))


def _check_rows(csv_path: Path, table: pd.DataFrame) -> None:
    """A row naming a photo and no mask (or a mask and no photo), or with no id in an id column, is an error."""
    for row in table.itertuples(index=False):
        if pd.isna(row.mask) or pd.isna(row.image):
            given, lacking = ("photo", "mask") if pd.isna(row.mask) else ("mask", "photo")
            raise DataError(f"{csv_path}: line {row.line} names the {given} "
                            f"{row.image if given == 'photo' else row.mask} but no {lacking}; give both, or remove "
                            "the line")
        if "id" in table and pd.isna(row.id):
            raise DataError(f"{csv_path}: line {row.line} has no id; give every pair an id (or drop the id column)")


def _check_once(csv_path: Path, items: pd.DataFrame, id_column: bool) -> None:
    """Each photo listed once (a repeated row would be scored twice) and each id once, naming the lines."""
    photo = items["image_path"].map(lambda p: Path(p).resolve())
    repeated = photo[photo.duplicated()]
    if len(repeated):
        rows = items[photo == repeated.iloc[0]]
        raise DataError(f"{csv_path}: {_listed(csv_path, rows['image_path'].iloc[0])} is listed on "
                        f"{_lines(rows['line'])}; list each photo once (a repeated row would be scored twice)")
    repeated = items["id"][items["id"].duplicated()]
    if len(repeated):
        rows = items[items["id"] == repeated.iloc[0]]
        if id_column:
            raise DataError(f"{csv_path}: id {repeated.iloc[0]} is given on {_lines(rows['line'])}; give each pair "
                            "its own id")
        photos = " and ".join(_listed(csv_path, p) for p in rows["image_path"])
        raise DataError(f"{csv_path}: {photos} ({_lines(rows['line'])}) share the file stem {repeated.iloc[0]}; add "
                        "an id column (id,image,mask) to tell them apart, or rename one")


def _listed(csv_path: Path, path) -> str:
    """A path as the CSV lists it (relative to its folder)."""
    return Path(os.path.relpath(path, csv_path.parent)).as_posix()


def _lines(lines) -> str:
    """'lines 2 and 4', 'lines 2, 4 and 7'."""
    numbers = [str(n) for n in lines]
    return f"lines {', '.join(numbers[:-1])} and {numbers[-1]}"


def pennfudan_dir() -> Path:
    """$SEGLIB_PENNFUDAN_DIR, else data/external/PennFudanPed."""
    return paths.env_folder(ENV_PENNFUDAN_DIR, paths.external_data_dir() / PENNFUDAN_FOLDER)


def pennfudan(root: str | Path | None = None) -> PairSet:
    """The Penn-Fudan pedestrians: PNGImages/<stem>.png with PedMasks/<stem>_mask.png (instance ids)."""
    root = Path(root) if root is not None else pennfudan_dir()
    if not (root / "PNGImages").is_dir():
        raise DataError(f"{root}: no Penn-Fudan copy here (PNGImages/ not found); get it with `seglib data "
                        f"fetch pennfudan` ({PENNFUDAN_URL}) or point ${ENV_PENNFUDAN_DIR} at a copy")
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
    recipe = FolderRecipe("Penn-Fudan", PENNFUDAN_FOLDER, PENNFUDAN_URL, ENV_PENNFUDAN_SOURCE, "PNGImages",
                          lambda root: len(_check_pennfudan(root).items))
    return fetch_folder(recipe, source, dest_root, progress=progress)


def _check_pennfudan(root: Path) -> PairSet:
    """Every image has its mask, and all PENNFUDAN_N of them are there."""
    pairs = pennfudan(root)
    if len(pairs.items) != PENNFUDAN_N:
        raise DataError(f"{root}: {len(pairs.items)} image/mask pairs, expected {PENNFUDAN_N} (an incomplete copy?)")
    return pairs

