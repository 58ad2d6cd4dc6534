"""Deterministic train/val/test split, stratified by foreground fraction: `seglib data split`."""

from __future__ import annotations

import hashlib
import io
import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.data.catalog import enclosing_dataset_dir
from seglib.data.check import CheckReport, duplicate_groups
from seglib.infra import paths
from seglib.infra.errors import ConfigError, DataError
from seglib.infra.io import check_writable_dir, refuse_writing_into, write_text_atomic
from seglib.infra.locks import exclusive
from seglib.infra.paths import SPLITS, display_path

DEFAULT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
N_STRATA = 4  # foreground-fraction quartiles
SPLIT_COLUMNS = ["id", "image", "mask", "fg_fraction", "stratum"]
FOLDS_COLUMNS = ["id", "fold"]
LEFT_OUT = "left-out"  # the split of a photo whose bytes are a fixed split's photo's (in no split file)
SEPARATOR = "/"  # between a set's name and a photo's id when a run trains on several sets


def make_split(
    report: CheckReport,
    seed: int = 42,
    fractions: dict[str, float] | None = None,
    n_folds: int = 0,
    source: str | Path | None = None,
    fixed: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Assign each pair to train/val/test (and optionally a fold of train+val).

    Pairs are stratified by foreground-fraction quartile; byte-identical images form one group and land
    in the same split. The result depends only on the data and `seed`. A set too small to give every split a
    photo, or every fold one, is a DataError saying how many photos it has and needs (`source` names the set in
    it: default its folder). `fixed` ({id: split}) places photos in a split of the set's own (its test part);
    `fractions` then share out the others. A fixed split keeps exactly its photos: another photo with the bytes of
    one of them is LEFT_OUT (in no split), so that no copy of a scored photo trains or validates.
    """
    # 1. a checked set, and enough photos for the split and the folds
    check_seed(seed)
    if not report.ok:
        raise DataError(f"{report.dataset_dir}: data check found {len(report.problems)} problem(s); run `seglib data check`")
    fractions = fractions or DEFAULT_FRACTIONS
    source = source if source is not None else report.dataset_dir
    if n_folds < 0 or n_folds == 1:
        raise DataError(f"folds={n_folds}: expected 0 (no folds) or 2 or more")
    table = report.table.copy()
    table["group"] = table["id"].map(duplicate_groups(table))
    groups = table.groupby("group", sort=True).agg(fg_fraction=("fg_fraction", "mean"), n=("id", "size"))
    placed = table[table["id"].astype(str).isin((fixed or {}).keys())]
    assignment = {g: fixed[str(i)] for i, g in zip(placed["id"], placed["group"], strict=True)}
    free = groups[~groups.index.isin(assignment.keys())].copy()
    _check_enough_photos(len(table), len(free), fractions, n_folds, source, set(assignment.values()))
    # 2. each stratum's groups shuffled, then dealt to test, val and train (the fixed ones stay where they are)
    free["stratum"] = _strata(free["fg_fraction"])
    held = groups[groups.index.isin(assignment.keys())]
    groups["stratum"] = pd.concat([free["stratum"], _strata(held["fg_fraction"])])
    rng = np.random.default_rng(seed)
    for _, stratum in free.groupby("stratum", sort=True):
        keys = stratum.index.to_numpy()
        keys = keys[rng.permutation(len(keys))]
        n_test, n_val = _split_counts(len(keys), fractions)
        for i, key in enumerate(keys):
            assignment[key] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    table["split"] = table["group"].map(assignment)
    copies = table["group"].isin(placed["group"]) & ~table["id"].astype(str).isin((fixed or {}).keys())
    table.loc[copies, "split"] = LEFT_OUT  # a fixed split keeps exactly its photos; other copies of them go nowhere
    table["stratum"] = table["group"].map(groups["stratum"]).astype(int)
    # 3. the folds of train+val
    if n_folds:
        dev = table[table["split"].isin(("train", "val"))].sort_values("id", key=_natural_key)
        dev_groups = dev["group"].drop_duplicates().to_numpy()
        dev_groups = dev_groups[rng.permutation(len(dev_groups))]
        if n_folds > len(dev_groups):
            raise DataError(f"{source}: folds={n_folds}: more folds than the {len(dev_groups)} train+val photo "
                            f"groups; use --folds {len(dev_groups)} or fewer, or add photos")
        fold_of = {g: i % n_folds for i, g in enumerate(dev_groups)}
        table["fold"] = table["group"].map(fold_of).fillna(-1).astype(int)
    # 4. each file named relative to the set's folder
    table["image"] = [_path_in_set(p, report.dataset_dir) for p in table["image_path"]]
    table["mask"] = [_path_in_set(p, report.dataset_dir) for p in table["mask_path"]]
    return table.sort_values("id", key=_natural_key).reset_index(drop=True)


def _strata(fg_fraction: pd.Series) -> pd.Series:
    """Each group's foreground-fraction quartile (0 to N_STRATA - 1); a single group is stratum 0."""
    if len(fg_fraction) < 2:
        return pd.Series(0, index=fg_fraction.index)
    return pd.qcut(fg_fraction.rank(method="first"), N_STRATA, labels=False)


def _split_counts(n: int, fractions: dict[str, float]) -> tuple[int, int]:
    """(test, val) groups of a stratum of `n` groups."""
    return int(round(n * fractions["test"])), int(round(n * fractions["val"]))


def _sizes(n_groups: int, fractions: dict[str, float]) -> dict[str, int]:
    """How many of `n_groups` photo groups each split gets (the strata depend on the number of groups only)."""
    strata = _strata(pd.Series(np.arange(n_groups, dtype=float))).value_counts().tolist()
    counts = [_split_counts(k, fractions) for k in strata]
    test, val = sum(t for t, _ in counts), sum(v for _, v in counts)
    return {"train": n_groups - test - val, "val": val, "test": test}


def _photos_needed(fractions: dict[str, float] | None = None, most: int = 1000) -> int | None:
    """The fewest photo groups that give train, val and test a photo each (None: not up to `most`)."""
    fractions = fractions or DEFAULT_FRACTIONS
    return next((n for n in range(1, most + 1) if min(_sizes(n, fractions).values()) > 0), None)


def _check_enough_photos(n_photos: int, n_groups: int, fractions: dict[str, float], n_folds: int, source,
                         filled: set[str] = frozenset()) -> None:
    """A DataError when `n_groups` photo groups cannot give every split a photo (`filled`: the splits that have
    photos of their own already), or `n_folds` folds one each: how many photos there are and how many each
    needs, in one line."""
    sizes = _sizes(n_groups, fractions)
    short = []
    if any(not sizes[name] and name not in filled for name in SPLITS):
        empty = " and ".join(name for name in SPLITS if not sizes[name] and name not in filled)
        needed = _photos_needed(fractions)
        shares = f"{fractions['val']:.0%} for val and {fractions['test']:.0%} for test"
        if fractions["val"] == fractions["test"]:
            shares = f"{fractions['val']:.0%} each for val and test"
        short.append(f"a train/val/test split ({shares}, per quarter of foreground fraction) leaves the {empty} split "
                     f"empty and needs at least {needed if needed else 'more'} photos")
    if n_folds > n_groups:
        short.append(f"folds={n_folds} needs at least {n_folds} photos in train and val")
    if short:
        counted = f"{n_photos} photo{'s' if n_photos != 1 else ''}" + \
            (f" ({n_groups} once byte-identical ones are grouped)" if n_groups != n_photos else "")
        raise DataError(f"{source}: {counted} {'is' if n_photos == 1 else 'are'} too few to split: "
                        f"{'; '.join(short)}; add photos{' or ask for fewer folds' if n_folds > n_groups else ''}")


def _path_in_set(path, root: Path) -> str:
    """How a split file names a photo or mask: relative to the set's folder `root` as listed, else (a path through
    `..` or a link) by where it really is, relative to where the folder really is."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def check_seed(seed) -> int:
    """A split seed is a whole number 0 or more (numpy's generators take no negative seed)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed {seed!r}: expected a whole number 0 or more")
    return int(seed)


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


def write_split(table: pd.DataFrame, out_dir: Path | None = None, *, overwrite: bool = False,
                inputs=()) -> list[Path]:
    """Write the split's CSVs (byte-stable for a given table); returns the files written.

    A folder that already holds a different split is refused unless `overwrite`: runs trained on it would
    otherwise be scored on their own training photos. A data set folder (or a folder inside one), one of
    `inputs` ((folder, description) pairs: what the command read), and a file that is not a split file (a data
    set's pair listing) are refused even with `overwrite`. Files that would not change are left alone. The
    folder is locked while it is compared and written: a second writer is refused at once.
    """
    out_dir = Path(out_dir) if out_dir is not None else paths.splits_dir()
    refuse_split_folder(out_dir, inputs)
    check_writable_dir(out_dir)
    files = split_files(table)
    with exclusive(lock_target(out_dir), f"splits folder {display_path(out_dir)}"):
        refuse_split_folder(out_dir, inputs)  # again under the lock: the folder may have been filled meanwhile
        current = {name: _read_text(out_dir / name) for name in files}
        changed = [name for name, text in current.items() if text is not None and text != files[name]]
        if changed and not overwrite:
            raise DataError(f"{display_path(out_dir)} already holds a different split ({', '.join(changed)} "
                            "would change); runs trained on it would then be scored on their own training "
                            "photos. Pass --overwrite to replace it, or --out DIR to write the new split elsewhere")
        written = []
        for name, text in files.items():
            if current[name] == text:
                continue
            path = out_dir / name
            try:
                write_text_atomic(path, text)
            except OSError as exc:
                raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
            written.append(path)
    return written


def lock_target(folder: Path) -> Path:
    """The path whose lock guards a splits folder: the folder resolved (so `.` and a link name the same lock)."""
    resolved = Path(folder).resolve()
    if not resolved.name:
        raise DataError(f"{folder}: the file system root is no place for split files; choose another --out")
    return resolved


def refuse_split_folder(out_dir: Path, inputs=()) -> None:
    """A SeglibError when `out_dir` is (inside) a data set folder (one whose train.csv lists pairs) or one of
    `inputs`, or holds a CSV of a split's name that is not a split file: writing there would break the data set
    (its train.csv) or replace another file."""
    dataset = enclosing_dataset_dir(out_dir)
    refuse_writing_into(out_dir, [*inputs, *([(dataset, "a data set folder")] if dataset else [])])
    for name in (*(f"{s}.csv" for s in SPLITS), "folds.csv"):
        path = out_dir / name
        if not path.exists():
            continue
        columns = FOLDS_COLUMNS if name == "folds.csv" else SPLIT_COLUMNS
        if not path.is_file() or _header(path)[:len(columns)] != columns:
            raise DataError(f"{path}: not a split file (its columns are not {','.join(columns)}); refusing to "
                            "replace it, even with --overwrite; choose another --out")


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [c.strip() for c in fh.readline().strip().split(",")]
    except (OSError, UnicodeDecodeError):
        return []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def split_fingerprint(splits_dir: Path | None = None) -> dict:
    """Where the split files are and a short hash of each split's image ids (None for a missing file)."""
    folder = Path(splits_dir) if splits_dir is not None else paths.splits_dir()
    out: dict = {"splits_dir": display_path(folder)}
    for name in SPLITS:
        path = folder / f"{name}.csv"
        ids = read_split(name, folder)["id"].tolist() if path.is_file() else None
        out[f"{name}_sha1"] = ids_hash(ids) if ids is not None else None
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
    seen = list(record.get("train_ids", []))
    if split == "test":
        seen += list(record.get("val_ids", []))
    overlap = shared_photos(ids, seen)
    folder = display_path(Path(splits_dir) if splits_dir is not None else paths.splits_dir())
    if overlap:
        raise DataError(f"{folder}/{split}.csv: {len(overlap)} of its {len(ids)} photos (ids {_shown(overlap)}) "
                        f"trained or selected this model (it was trained on the split in "
                        f"{record.get('splits_dir', '?')} as it was then); restore that split (e.g. `git checkout "
                        "data/splits`) or pass --splits-dir")
    key = f"{split}_sha1"
    if record.get(key) and record[key] != recorded_hash(record, list(ids)):
        return [f"the {split} split in {folder} is not the one this model was trained beside (its photos differ); "
                "no training photo is among them, but scores are not comparable with runs on the committed split"]
    return []


def recorded_hash(record: dict, ids: list) -> str:
    """The ids' hash as a checkpoint's split record writes it: one hash for one set, and for a model trained on
    several sets one per set (ids qualified `set/id`) in the record's order, joined by '+'."""
    names = list(record.get("datasets") or [])
    if len(names) < 2:
        return ids_hash(ids)
    by_set: dict[str, list[str]] = {name: [] for name in names}
    for qualified in map(str, ids):
        name, _, own = qualified.partition(SEPARATOR)
        by_set.setdefault(name, []).append(own)
    return "+".join(ids_hash(by_set[name]) for name in [*names, *sorted(set(by_set) - set(names))])


def shared_photos(ids, seen) -> list[str]:
    """The ids of `ids` that are also in `seen`, in natural order: the one rule by which a scored or
    validating split may share no photo with what trained (and, for test, selected) a model."""
    return sorted(set(map(str, ids)) & set(map(str, seen)), key=lambda i: (len(i), i))


def check_val_apart_from_train(train_ids, val_ids, train_file: str, val_file: str) -> None:
    """Refuse training whose val photos are also training photos (`shared_photos`, the rule evaluation applies
    later): the best epoch and the threshold would be chosen on photos the model trained on."""
    overlap = shared_photos(val_ids, train_ids)
    if overlap:
        raise DataError(f"{val_file}: {len(overlap)} of its {len(list(val_ids))} photos (ids {_shown(overlap)}) are "
                        f"also in {train_file}; the best epoch would be chosen on training photos. Write a split "
                        "whose val and train are apart (`seglib data split`) or pass another --splits-dir")


def _shown(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (", ..." if len(ids) > n else "")


def ids_hash(ids: list) -> str:
    return hashlib.sha1(",".join(sorted(map(str, ids), key=lambda i: (len(i), i))).encode()).hexdigest()[:12]


def read_split(name: str, splits_dir: Path | None = None) -> pd.DataFrame:
    """Read one committed split CSV."""
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
    path = (Path(splits_dir) if splits_dir is not None else paths.splits_dir()) / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"{path}: split file not found (run `seglib data split`)")
    return parse_split(_read_bytes(path), path)


def parse_split(data: bytes, path: Path) -> pd.DataFrame:
    """A split table from the bytes of its CSV (`path` names it in errors): columns id, image, mask at least,
    each id once (a repeated row would be scored or trained on twice)."""
    try:
        table = pd.read_csv(io.BytesIO(data), dtype={"id": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable split CSV ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from None
    missing = [c for c in ("id", "image", "mask") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    repeated = table["id"][table["id"].duplicated()].unique().tolist()
    if repeated:
        lines = [str(i + 2) for i in table.index[table["id"] == repeated[0]]]
        raise DataError(f"{path}: id {repeated[0]} is listed {len(lines)} times (lines {', '.join(lines)})"
                        f"{f' and {len(repeated) - 1} more id(s) too' if len(repeated) > 1 else ''}; each photo "
                        "belongs once: remove the repeated rows, or write the split again with `seglib data split`")
    return table


def parse_folds(data: bytes, path: Path) -> pd.DataFrame:
    """folds.csv from its bytes: columns id, fold."""
    try:
        folds = pd.read_csv(io.BytesIO(data), dtype={"id": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise DataError(f"{path}: not a readable folds CSV (expected columns id,fold)") from None
    if list(folds.columns[:2]) != FOLDS_COLUMNS:
        raise DataError(f"{path}: expected columns id,fold")
    return folds


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def fold_split(fold: int, splits_dir: Path | None = None, inner: int = -1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) tables for cross-validation fold `fold`: train+val less that fold of folds.csv, and the fold.
    With an `inner` fold (nested cross-validation): train+val less both folds, and the inner fold.

    Test never enters a fold. A folds.csv that does not cover train+val exactly is refused."""
    folder = Path(splits_dir) if splits_dir is not None else paths.splits_dir()
    path, folds = _read_folds(folder)
    return fold_tables(fold, folds, read_split("train", folder), read_split("val", folder), path, inner)


def fold_tables(fold: int, folds: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, path: Path, inner: int = -1
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val) of fold `fold` (and `inner`, see `fold_split`) from the folds table and the train and val
    tables (`path`: folds.csv)."""
    dev = pd.concat([train, val], ignore_index=True)
    if set(folds["id"]) != set(dev["id"]) or folds["id"].duplicated().any():
        raise DataError(f"{path}: its ids are not exactly the train and val photos (split rewritten since?)")
    numbers = sorted(folds["fold"].unique().tolist())
    for number in (fold, inner) if inner != -1 else (fold,):
        if number not in numbers:
            raise DataError(f"{path}: no fold {number}; folds are {', '.join(map(str, numbers))}")
    if inner == fold:
        raise DataError(f"{path}: the inner fold {inner} is the fold left out already; choose another")
    held_out = set(folds.loc[folds["fold"] == (inner if inner != -1 else fold), "id"])
    left_out = set(folds.loc[folds["fold"] == fold, "id"]) | held_out
    return (dev[~dev["id"].isin(left_out)].reset_index(drop=True),
            dev[dev["id"].isin(held_out)].reset_index(drop=True))


def fold_numbers(splits_dir: Path | None = None) -> list[int]:
    """The fold numbers of data/splits/folds.csv."""
    _, folds = _read_folds(Path(splits_dir) if splits_dir is not None else paths.splits_dir())
    return sorted(int(f) for f in folds["fold"].unique())


def _read_folds(folder: Path) -> tuple[Path, pd.DataFrame]:
    """(path, table) of folder/folds.csv: columns id, fold."""
    path = folder / "folds.csv"
    if not path.is_file():
        raise DataError(f"{path}: folds file not found (run `seglib data split --folds 5`)")
    return path, parse_folds(_read_bytes(path), path)


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
