"""Find the data set folder and read its train.csv into a table of image/mask pairs."""

from __future__ import annotations

import csv
import re
from pathlib import Path, PureWindowsPath

import pandas as pd

from seglib.infra import paths
from seglib.infra.errors import DataError

CSV_NAME = "train.csv"
CSV_COLUMNS = ("masks", "images")


def find_dataset_dir(path: str | Path | None = None) -> Path:
    """Return the folder holding train.csv: `path` itself, or its one child that holds it.

    Default: the fetched copy under `paths.raw_data_dir()`.
    """
    root = Path(path) if path is not None else paths.raw_data_dir()
    if (root / CSV_NAME).is_file():
        return root
    if not root.is_dir():
        hint = " (run `seglib data fetch` first)" if path is None else ""
        raise DataError(f"{root}: data set folder not found{hint}")
    candidates = sorted(p for p in root.iterdir() if p.is_dir() and (p / CSV_NAME).is_file())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"{root}: no {CSV_NAME} here or in a sub-folder (run `seglib data fetch` first)")
    names = ", ".join(p.name for p in candidates)
    raise DataError(f"{root}: several data set folders ({names}); pass one with --data-dir")


def is_pairs_listing(csv_path: str | Path) -> bool:
    """`csv_path` is a data set's train.csv (a `masks,images` header), not e.g. a split file of the same name."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return sorted(h.strip() for h in header) == sorted(CSV_COLUMNS)


def enclosing_dataset_dir(path: str | Path) -> Path | None:
    """The nearest folder at or above `path` that is a data set folder (holds a pairs-listing train.csv)."""
    probe = Path(path).resolve()
    for folder in (probe, *probe.parents):
        if (folder / CSV_NAME).is_file() and is_pairs_listing(folder / CSV_NAME):
            return folder
    return None


def listed_relative_path(listed: str, where: str) -> str:
    """A train.csv path made relative to the data set folder ('/'-separated), or a DataError naming `where`.

    The CSV's paths start with the folder's original name (`Human-Segmentation-Dataset-master/...`), i.e.
    they are relative to its parent: the first component is dropped. Empty, absolute and '..' paths are
    refused, and so is a path with no folder component.
    """
    text = listed.strip()
    if not text:
        raise DataError(f"{where}: empty path")
    if text.startswith(("/", "\\")) or PureWindowsPath(text).drive:
        raise DataError(f"{where}: absolute path not allowed: {listed!r}")
    parts = [p for p in re.split(r"[/\\]", text) if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{where}: path leads outside the data set folder: {listed!r}")
    if len(parts) < 2:
        raise DataError(f"{where}: path should start with the data set folder's name: {listed!r}")
    return "/".join(parts[1:])


def resolve_listed_path(dataset_dir: Path, listed: str) -> Path:
    """Resolve a train.csv path against the data set folder, whatever that folder is called."""
    return dataset_dir / listed_relative_path(listed, str(dataset_dir / CSV_NAME))


def read_pairs_csv(dataset_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read train.csv into (pairs, problems); pairs has columns id, image_path, mask_path, row.

    Problems (one line each) cover a missing/empty/header-only CSV, wrong columns, blank or short rows,
    duplicate rows and unsafe paths; rows with problems are left out of `pairs`.
    """
    csv_path = dataset_dir / CSV_NAME
    problems: list[str] = []
    if not csv_path.is_file():
        return _empty_pairs(), [f"{csv_path}: file not found"]
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return _empty_pairs(), [f"{csv_path}: cannot read ({exc})"]
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return _empty_pairs(), [f"{csv_path}: empty file"]
    header = [h.strip() for h in rows[0]]
    if sorted(header) != sorted(CSV_COLUMNS):
        return _empty_pairs(), [
            f"{csv_path}: wrong columns {header}; expected {list(CSV_COLUMNS)}"
        ]
    col = {name: header.index(name) for name in CSV_COLUMNS}
    records, seen = [], {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            problems.append(f"{csv_path}:{lineno}: blank line")
            continue
        if len(row) != len(header):
            problems.append(f"{csv_path}:{lineno}: expected {len(header)} fields, found {len(row)}")
            continue
        listed_mask, listed_image = row[col["masks"]].strip(), row[col["images"]].strip()
        key = (listed_image, listed_mask)
        if key in seen:
            problems.append(f"{csv_path}:{lineno}: duplicate of line {seen[key]} ({listed_image})")
            continue
        seen[key] = lineno
        try:
            image_path = resolve_listed_path(dataset_dir, listed_image)
            mask_path = resolve_listed_path(dataset_dir, listed_mask)
        except DataError as exc:
            problems.append(f"{csv_path}:{lineno}: {str(exc).split(': ', 1)[1]}")
            continue
        records.append(
            {"id": image_path.stem, "image_path": image_path, "mask_path": mask_path, "row": lineno}
        )
    if len(rows) == 1:
        problems.append(f"{csv_path}: header only, no pairs listed")
    pairs = pd.DataFrame.from_records(records, columns=["id", "image_path", "mask_path", "row"])
    dup_ids = pairs["id"][pairs["id"].duplicated()].unique()
    for dup in dup_ids:
        problems.append(f"{csv_path}: image id {dup!r} is listed more than once")
    return pairs, problems


def load_pairs(dataset_dir: str | Path | None = None) -> pd.DataFrame:
    """Pairs table of a data set; raise DataError listing CSV problems, if any."""
    folder = find_dataset_dir(dataset_dir)
    pairs, problems = read_pairs_csv(folder)
    if problems:
        raise DataError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return pairs


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(columns=["id", "image_path", "mask_path", "row"])
