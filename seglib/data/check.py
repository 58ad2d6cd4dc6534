"""Validate a data set copy and describe its quirks: `seglib data check`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.data.catalog import find_dataset_dir, read_pairs_csv
from seglib.data.mask_rules import PINHOLE_MAX_PX, pinholes
from seglib.infra.errors import DataError
from seglib.infra.io import open_image
from seglib.infra.paths import link_problem
from seglib.metrics import boundary_iou

# Masks smaller or larger than their image are accepted when they are a uniform rescale of it:
# width and height ratios agree within this relative tolerance (well above the rounding of a downscaled
# mask's whole-pixel size).
ASPECT_TOLERANCE = 0.01


@dataclass
class Quirk:
    """Something true of the real data that seglib handles deliberately."""

    name: str
    count: int
    what: str
    action: str


@dataclass
class CheckReport:
    dataset_dir: Path
    table: pd.DataFrame  # one row per readable pair
    problems: list[str] = field(default_factory=list)
    quirks: list[Quirk] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def quirks_table(self) -> pd.DataFrame:
        return pd.DataFrame([q.__dict__ for q in self.quirks], columns=["name", "count", "what", "action"])

    def summary(self) -> str:
        lines = [f"{self.dataset_dir}: {len(self.table)} image/mask pairs"]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s)")
        for q in self.quirks:
            lines.append(f"  quirk {q.name} ({q.count}): {q.what} -> {q.action}")
        return "\n".join(lines)


def relation(image_size: tuple[int, int], mask_size: tuple[int, int]) -> str:
    """'same', 'scaled' (uniform rescale within ASPECT_TOLERANCE) or 'mismatch'; sizes are (w, h)."""
    if image_size == mask_size:
        return "same"
    (iw, ih), (mw, mh) = image_size, mask_size
    rw, rh = iw / mw, ih / mh
    if abs(rw - rh) / max(rw, rh) <= ASPECT_TOLERANCE:
        return "scaled"
    return "mismatch"


def inspect_pair(image_path: Path, mask_path: Path) -> tuple[dict, list[str]]:
    """Per-pair facts and the problems found (each a line naming the file)."""
    problems: list[str] = []
    facts: dict = {}
    try:
        img = open_image(image_path)
    except DataError as exc:
        problems.append(str(exc))
        img = None
    try:
        mask_img = open_image(mask_path)
    except DataError as exc:
        problems.append(str(exc))
        mask_img = None
    if img is None or mask_img is None:
        return facts, problems
    mask = np.asarray(mask_img.convert("L") if mask_img.mode not in ("L", "1") else mask_img)
    values = np.unique(mask)
    binary = set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}
    if mask_img.mode not in ("L", "1", "P"):
        problems.append(f"{mask_path}: mask has colour mode {mask_img.mode}; expected a single-channel mask")
    if not binary:
        extra = [int(v) for v in values if v not in (0, 1, 255)]
        problems.append(
            f"{mask_path}: mask is not binary ({len(values)} distinct values, e.g. {extra[:3]}); expected 0/255"
        )
    rel = relation(img.size, mask_img.size)
    if rel == "mismatch":
        problems.append(
            f"{mask_path}: mask size {mask_img.size[0]}x{mask_img.size[1]} is not a rescale of its image "
            f"{image_path.name} ({img.size[0]}x{img.size[1]})"
        )
    person = mask > (127 if mask.max() > 1 else 0)
    fg = float(person.mean())
    holes, specks, clean = pinholes(person)
    gray = np.asarray(img.convert("L"), dtype=np.float32)
    facts = {
        "image_width": img.size[0],
        "image_height": img.size[1],
        "mask_width": mask_img.size[0],
        "mask_height": mask_img.size[1],
        "size_relation": rel,
        "scale": img.size[0] / mask_img.size[0],
        "image_mode": img.mode,
        "mask_mode": mask_img.mode,
        "mask_values": ",".join(str(int(v)) for v in values[:4]),
        "exif_orientation": int(img.getexif().get(274, 1)),
        "fg_fraction": fg,
        "mean_brightness": float(gray.mean() / 255.0),
        "aspect_ratio": img.size[0] / img.size[1],
        "image_sha1": hashlib.sha1(image_path.read_bytes()).hexdigest(),
        "pinholes": holes,
        "specks": specks,
        "boundary_iou_without_pinholes": boundary_iou(clean, person) if holes or specks else 1.0,
    }
    return facts, problems



def check_dataset(dataset_dir: str | Path | None = None) -> CheckReport:
    """Check every pair (all problems, not just the first) and collect the quirks."""
    folder = find_dataset_dir(dataset_dir)
    pairs, problems = read_pairs_csv(folder)
    rows = []
    for pair in pairs.itertuples(index=False):
        facts, pair_problems = inspect_pair(pair.image_path, pair.mask_path)
        problems.extend(pair_problems)
        if facts and not pair_problems:
            rows.append({"id": pair.id, "image_path": str(pair.image_path), "mask_path": str(pair.mask_path), **facts})
    table = pd.DataFrame(rows)
    if len(pairs) == 0 and not problems:
        problems.append(f"{folder / 'train.csv'}: no pairs listed")
    listed = {_real(p) for p in (*pairs["image_path"], *pairs["mask_path"])}
    report = CheckReport(folder, table, problems)
    report.quirks = _find_quirks(folder, table, listed)
    return report


def duplicate_groups(table: pd.DataFrame) -> dict[str, str]:
    """Map each id to a group key; byte-identical images share one (so a split keeps them together)."""
    if table.empty:
        return {}
    first = table.groupby("image_sha1")["id"].transform("min")
    return dict(zip(table["id"], first, strict=True))


def _find_quirks(folder: Path, table: pd.DataFrame, listed: set[Path]) -> list[Quirk]:
    """Every quirk of the data set, in the order the data card lists them: the CSV, then (for a non-empty table)
    sizes and modes, mask values and duplicates, orientation and sizes, and files train.csv does not list."""
    quirks = [
        Quirk(
            "csv-paths-relative-to-parent",
            len(table),
            "train.csv paths start with the data set folder's original name (relative to its parent)",
            "first path component dropped; paths resolved inside the data set folder whatever it is called",
        )
    ]
    if table.empty:
        return quirks
    return quirks + _size_quirks(table) + _content_quirks(table) + _layout_quirks(table) + \
        _unlisted_quirks(folder, listed)


def _size_quirks(table: pd.DataFrame) -> list[Quirk]:
    """Masks smaller than their images, images not in RGB."""
    quirks: list[Quirk] = []
    scaled = table[table["size_relation"] == "scaled"]
    if len(scaled):
        quirks.append(
            Quirk(
                "mask-smaller-than-image",
                len(scaled),
                f"mask is a uniform downscale of its image (factor {scaled['scale'].min():.2f}-"
                f"{scaled['scale'].max():.2f}, aspect within {ASPECT_TOLERANCE:.0%})",
                "image resized to the mask's size (area filter); the mask's resolution is the ground truth "
                "for evaluation",
            )
        )
    gray = table[table["image_mode"] != "RGB"]
    if len(gray):
        quirks.append(
            Quirk(
                "non-rgb-image",
                len(gray),
                f"image mode {', '.join(sorted(gray['image_mode'].unique()))} (ids {', '.join(gray['id'][:4])})",
                "converted to 3-channel RGB on load",
            )
        )
    return quirks


def _content_quirks(table: pd.DataFrame) -> list[Quirk]:
    """Mask values 0/255, byte-identical images under different ids."""
    quirks: list[Quirk] = []
    quirks.append(
        Quirk(
            "mask-values-0-255",
            int((table["mask_values"] == "0,255").sum()),
            "masks are 8-bit single-channel PNGs holding 0 and 255",
            "binarised as value > 127 -> 1.0; any other value is reported as an error",
        )
    )
    speckled = table[(table["pinholes"] > 0) | (table["specks"] > 0)]
    if len(speckled):
        quirks.append(
            Quirk(
                "mask-pinholes",
                len(speckled),
                f"masks with pinholes: {int(table['pinholes'].sum())} specks of background inside the figure and "
                f"{int(table['specks'].sum())} specks of figure in the background, each at most {PINHOLE_MAX_PX} px",
                "kept as the ground truth (scores stay comparable); they cap boundary IoU: each mask without its "
                f"pinholes scores {table['boundary_iou_without_pinholes'].mean():.3f} against it on average, and a "
                "model that predicts none does no better",
            )
        )
    groups = duplicate_groups(table)
    dup_ids = [i for i, g in groups.items() if list(groups.values()).count(g) > 1]
    if dup_ids:
        quirks.append(
            Quirk(
                "duplicate-images",
                len(dup_ids),
                f"byte-identical images listed under different ids ({', '.join(sorted(dup_ids, key=_natural))}), "
                "with slightly different masks",
                "kept, but always placed in the same split so no test image is seen in training",
            )
        )
    return quirks


def _layout_quirks(table: pd.DataFrame) -> list[Quirk]:
    """EXIF orientation tags, the many image sizes and orientations."""
    quirks: list[Quirk] = []
    exif = table[table["exif_orientation"] != 1]
    if len(exif):
        quirks.append(
            Quirk(
                "exif-orientation",
                len(exif),
                "images carry an EXIF orientation tag",
                "data set pixels are used as stored (the masks match the stored orientation)",
            )
        )
    orientations = (table["aspect_ratio"] < 1).sum()
    quirks.append(
        Quirk(
            "mixed-sizes",
            int(table[["image_width", "image_height"]].drop_duplicates().shape[0]),
            f"{table[['image_width', 'image_height']].drop_duplicates().shape[0]} distinct image sizes, "
            f"{orientations} portrait / {len(table) - orientations} landscape",
            "letterboxed (longest side resized, padded to a square) for the model; predictions are mapped back",
        )
    )
    return quirks


def _unlisted_quirks(folder: Path, listed: set[Path]) -> list[Quirk]:
    """Files in the image and mask folders that train.csv does not list, and links there that lead to no file
    (named with what they are)."""
    quirks: list[Quirk] = []
    entries = [p for sub in ("Training_Images", "Ground_Truth") if (folder / sub).is_dir()
               for p in (folder / sub).iterdir()]
    unlisted = [p.name for p in entries if p.is_file() and _real(p) not in listed]
    unlisted += [f"{p.name} ({why})" for p in entries if (why := link_problem(p)) and _real(p) not in listed]
    if unlisted:
        quirks.append(
            Quirk(
                "unlisted-files",
                len(unlisted),
                "files in the image/mask folders not listed in train.csv "
                f"({', '.join(sorted(set(unlisted))[:3])})",
                "ignored (train.csv is the source of truth)",
            )
        )
    return quirks


def _real(path) -> Path:
    """Where a path really leads, links followed (a link loop is left as it is, never an error)."""
    return Path(os.path.realpath(path))


def _natural(text: str) -> tuple:
    return (int(text), "") if text.isdigit() else (1 << 30, text)
