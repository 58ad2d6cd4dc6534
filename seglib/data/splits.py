"""Deterministic train/val/test split, stratified by foreground fraction: `seglib data split`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from seglib import config
from seglib.data.check import CheckReport, duplicate_groups
from seglib.errors import DataError
from seglib.io import write_text_atomic

SPLITS = ("train", "val", "test")
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
        fold_of = {g: i % n_folds for i, g in enumerate(dev_groups)}
        table["fold"] = table["group"].map(fold_of).fillna(-1).astype(int)
    root = report.dataset_dir
    table["image"] = [Path(p).relative_to(root).as_posix() for p in table["image_path"]]
    table["mask"] = [Path(p).relative_to(root).as_posix() for p in table["mask_path"]]
    return table.sort_values("id", key=_natural_key).reset_index(drop=True)


def write_split(table: pd.DataFrame, out_dir: Path | None = None) -> list[Path]:
    """Write one CSV per split (and folds.csv when folds were made); byte-stable for a given table."""
    out_dir = Path(out_dir) if out_dir is not None else config.splits_dir()
    written = []
    for name in SPLITS:
        part = table[table["split"] == name][SPLIT_COLUMNS]
        path = out_dir / f"{name}.csv"
        write_text_atomic(path, part.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
        written.append(path)
    if "fold" in table:
        path = out_dir / "folds.csv"
        part = table[table["fold"] >= 0][["id", "fold"]]
        write_text_atomic(path, part.to_csv(index=False, lineterminator="\n"))
        written.append(path)
    return written


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
