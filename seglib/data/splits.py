"""Deterministic train/val/test split, stratified by foreground fraction: `seglib data split`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from seglib import config
from seglib.config import display_path
from seglib.data.check import CheckReport, duplicate_groups
from seglib.errors import DataError
from seglib.io import check_writable_dir, write_text_atomic

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")  # the splits a model is scored on (train is what it saw)
DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
N_STRATA = 4  # foreground-fraction quartiles
SPLIT_COLUMNS = ["id", "image", "mask", "fg_fraction", "stratum"]


def make_split(
    report: CheckReport,
    seed: int = 42,
    fractions: dict[str, float] | None = None,
    n_folds: int = 0,
) -> pd.DataFrame:
    """Assign each pair to train/val/test (and optionally a fold of train+val).

    Pairs are stratified by foreground-fraction quartile; byte-identical images form one group and land
    in the same split. The result depends only on the data and `seed`.
    """
    if not report.ok:
        raise DataError(f"{report.dataset_dir}: data check found {len(report.problems)} problem(s); run `seglib data check`")
    fractions = fractions or DEFAULT_FRACTIONS
    if n_folds < 0 or n_folds == 1:
        raise DataError(f"folds={n_folds}: expected 0 (no folds) or 2 or more")
    table = report.table.copy()
    table["group"] = table["id"].map(duplicate_groups(table))
    groups = table.groupby("group", sort=True).agg(fg_fraction=("fg_fraction", "mean"), n=("id", "size"))
    groups["stratum"] = pd.qcut(groups["fg_fraction"].rank(method="first"), N_STRATA, labels=False)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for _, stratum in groups.groupby("stratum", sort=True):
        keys = stratum.index.to_numpy()
        keys = keys[rng.permutation(len(keys))]
        n = len(keys)
        n_test = int(round(n * fractions["test"]))
        n_val = int(round(n * fractions["val"]))
        for i, key in enumerate(keys):
            assignment[key] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    table["split"] = table["group"].map(assignment)
    table["stratum"] = table["group"].map(groups["stratum"]).astype(int)
    if n_folds:
        dev = table[table["split"] != "test"].sort_values("id", key=_natural_key)
        dev_groups = dev["group"].drop_duplicates().to_numpy()
        dev_groups = dev_groups[rng.permutation(len(dev_groups))]
        if n_folds > len(dev_groups):
            raise DataError(f"folds={n_folds}: more folds than the {len(dev_groups)} train+val photo groups")
        fold_of = {g: i % n_folds for i, g in enumerate(dev_groups)}
        table["fold"] = table["group"].map(fold_of).fillna(-1).astype(int)
    root = report.dataset_dir
    table["image"] = [Path(p).relative_to(root).as_posix() for p in table["image_path"]]
    table["mask"] = [Path(p).relative_to(root).as_posix() for p in table["mask_path"]]
    return table.sort_values("id", key=_natural_key).reset_index(drop=True)


def split_files(table: pd.DataFrame) -> dict[str, str]:
    """{file name: CSV text} of a split table: one CSV per split, plus folds.csv when folds were made."""
    files = {}
    for name in SPLITS:
        part = table[table["split"] == name][SPLIT_COLUMNS]
        files[f"{name}.csv"] = part.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    if "fold" in table:
        part = table[table["fold"] >= 0][["id", "fold"]]
        files["folds.csv"] = part.to_csv(index=False, lineterminator="\n")
    return files


def write_split(table: pd.DataFrame, out_dir: Path | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write the split's CSVs (byte-stable for a given table); returns the files written.

    A folder that already holds a different split is refused unless `overwrite`: runs trained on the old split
    would otherwise be scored on their own training photos. Files that would not change are left alone.
    """
    out_dir = Path(out_dir) if out_dir is not None else config.splits_dir()
    check_writable_dir(out_dir)
    files = split_files(table)
    changed = [name for name, text in files.items()
               if (out_dir / name).is_file() and (out_dir / name).read_text(encoding="utf-8") != text]
    if changed and not overwrite:
        raise DataError(f"{display_path(out_dir)} already holds a different split ({', '.join(changed)} would "
                        "change); runs trained on it would then be scored on their own training photos. Pass "
                        "--overwrite to replace it, or --out DIR to write the new split elsewhere")
    written = []
    for name, text in files.items():
        path = out_dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
        written.append(path)
    return written


def split_fingerprint(splits_dir: Path | None = None) -> dict:
    """Where the split files are and a short hash of each split's image ids (None for a missing file)."""
    folder = Path(splits_dir) if splits_dir is not None else config.splits_dir()
    out: dict = {"splits_dir": display_path(folder)}
    for name in SPLITS:
        path = folder / f"{name}.csv"
        ids = read_split(name, folder)["id"].tolist() if path.is_file() else None
        out[f"{name}_sha1"] = _ids_hash(ids) if ids is not None else None
    return out


def check_scored_split(record: dict | None, split: str, ids: list[str], splits_dir: Path | None = None
                       ) -> list[str]:
    """Refuse to score `split` on photos that trained or validated the model; warn when the split differs.

    `record`: the checkpoint's `data_split` (train/val ids and fingerprint at training time), None for a
    checkpoint that does not record it (nothing to check). Returns warnings (one line each); raises DataError
    on an overlap.
    """
    if not record:  # written before seglib recorded splits: nothing to check against (metrics say so)
        return []
    seen = set(map(str, record.get("train_ids", [])))
    if split == "test":
        seen |= set(map(str, record.get("val_ids", [])))
    overlap = sorted(set(map(str, ids)) & seen, key=lambda i: (len(i), i))
    folder = display_path(Path(splits_dir) if splits_dir is not None else config.splits_dir())
    if overlap:
        shown = ", ".join(overlap[:5]) + (", ..." if len(overlap) > 5 else "")
        raise DataError(f"{folder}/{split}.csv: {len(overlap)} of its {len(ids)} photos (ids {shown}) trained or "
                        f"selected this model (it was trained on the split in {record.get('splits_dir', '?')} as "
                        "it was then); restore that split (e.g. `git checkout data/splits`) or pass --splits-dir")
    key = f"{split}_sha1"
    if record.get(key) and record[key] != _ids_hash(list(ids)):
        return [f"the {split} split in {folder} is not the one this model was trained beside (its photos differ); "
                "no training photo is among them, but scores are not comparable with runs on the committed split"]
    return []


def _ids_hash(ids: list) -> str:
    return hashlib.sha1(",".join(sorted(map(str, ids), key=lambda i: (len(i), i))).encode()).hexdigest()[:12]


def read_split(name: str, splits_dir: Path | None = None) -> pd.DataFrame:
    """Read one committed split CSV."""
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    path = (Path(splits_dir) if splits_dir is not None else config.splits_dir()) / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"{path}: split file not found (run `seglib data split`)")
    table = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ("id", "image", "mask") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def fold_split(fold: int, splits_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) tables for cross-validation fold `fold`: train+val less that fold of folds.csv, and the fold.

    Test never enters a fold. A folds.csv that does not cover train+val exactly is refused."""
    folder = Path(splits_dir) if splits_dir is not None else config.splits_dir()
    path, folds = _read_folds(folder)
    dev = pd.concat([read_split("train", folder), read_split("val", folder)], ignore_index=True)
    if set(folds["id"]) != set(dev["id"]) or folds["id"].duplicated().any():
        raise DataError(f"{path}: its ids are not exactly the train and val photos (split rewritten since?)")
    numbers = sorted(folds["fold"].unique().tolist())
    if fold not in numbers:
        raise DataError(f"{path}: no fold {fold}; folds are {', '.join(map(str, numbers))}")
    held_out = set(folds.loc[folds["fold"] == fold, "id"])
    in_fold = dev["id"].isin(held_out)
    return dev[~in_fold].reset_index(drop=True), dev[in_fold].reset_index(drop=True)


def fold_numbers(splits_dir: Path | None = None) -> list[int]:
    """The fold numbers of data/splits/folds.csv."""
    _, folds = _read_folds(Path(splits_dir) if splits_dir is not None else config.splits_dir())
    return sorted(int(f) for f in folds["fold"].unique())


def _read_folds(folder: Path) -> tuple[Path, pd.DataFrame]:
    """(path, table) of folder/folds.csv: columns id, fold."""
    path = folder / "folds.csv"
    if not path.is_file():
        raise DataError(f"{path}: folds file not found (run `seglib data split --folds 5`)")
    folds = pd.read_csv(path, dtype={"id": str})
    if list(folds.columns[:2]) != ["id", "fold"]:
        raise DataError(f"{path}: expected columns id,fold")
    return path, folds


def split_summary(splits_dir: Path | None = None) -> pd.DataFrame:
    """Per split: number of images and foreground-fraction statistics."""
    rows = []
    for name in SPLITS:
        part = read_split(name, splits_dir)
        fg = part["fg_fraction"]
        rows.append(
            {"split": name, "n_images": len(part), "fg_mean": fg.mean(), "fg_median": fg.median(),
             "fg_min": fg.min(), "fg_max": fg.max()}
        )
    return pd.DataFrame(rows)


def _natural_key(ids: pd.Series) -> pd.Series:
    return ids.map(lambda s: (0, int(s), "") if str(s).isdigit() else (1, 0, str(s)))
