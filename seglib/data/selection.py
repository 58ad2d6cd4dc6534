"""The registered sets a run trains on (`--set data=NAME` or `data=A,B`), their split files read once.

`SetSplits` has the interface of one `data.snapshot.SplitSnapshot` (`table`, `fold_split`, `sha1`, `fingerprint`,
`check_unchanged`, `folder`), so training and evaluation read one set or several alike. Its tables carry each
row's files (`image_path`, `mask_path`) and mask rule, resolved through the set's description; with several sets
an id is qualified by its set (`NAME/id`), so that a run's record of its photos names each one unambiguously.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seglib.data.descriptions import BUILTIN, DatasetSpec, get
from seglib.data.snapshot import SplitSnapshot, snapshot_splits
from seglib.data.splits import SEPARATOR
from seglib.infra.errors import DataError
from seglib.infra.paths import display_path


def set_names(data: str) -> list[str]:
    """The set names of a `data` setting ("human-seg", "a,b"), each once, in the order given."""
    names = [n.strip() for n in str(data).split(",")]
    if not all(names):
        raise DataError(f"data={data!r}: give registered set names separated by commas (seglib data list)")
    if len(set(names)) != len(names):
        raise DataError(f"data={data!r}: a set is named twice")
    return names


def trained_sets(data_split: dict | None) -> list[str]:
    """The sets a checkpoint's `data_split` record says trained the model (the built-in set for older records)."""
    if not data_split:
        return [BUILTIN]
    return list(data_split.get("datasets") or [BUILTIN])


def ids_from(data_split: dict | None, name: str, key: str = "train_ids") -> set[str]:
    """The ids of set `name` among a record's `train_ids` or `val_ids` (qualified ids of several sets unwrapped)."""
    if not data_split or name not in trained_sets(data_split):
        return set()
    ids = [str(i) for i in data_split.get(key, [])]
    if len(trained_sets(data_split)) == 1:
        return set(ids)
    prefix = f"{name}{SEPARATOR}"
    return {i[len(prefix):] for i in ids if i.startswith(prefix)}


@dataclass(frozen=True)
class SetSplits:
    """The split files of one or several registered sets as read once, with a way to resolve each row's files."""

    specs: tuple[DatasetSpec, ...]
    snapshots: tuple[SplitSnapshot, ...]
    dataset_dir: object = None  # the built-in set's folder when not the fetched copy (--data-dir)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def folder(self) -> Path:
        """The first set's splits folder (the one folder of a single set)."""
        return self.snapshots[0].folder

    def table(self, split: str) -> pd.DataFrame:
        return self._joined([snap.table(split) for snap in self.snapshots])

    def fold_split(self, fold: int, inner: int = -1) -> tuple[pd.DataFrame, pd.DataFrame]:
        halves = [snap.fold_split(fold, inner) for snap in self.snapshots]
        return self._joined([t for t, _ in halves]), self._joined([v for _, v in halves])

    def sha1(self, name: str | None = None) -> str:
        if len(self.snapshots) == 1:
            return self.snapshots[0].sha1(name)
        return "+".join(snap.sha1(name) for snap in self.snapshots)

    def fingerprint(self) -> dict:
        """What a checkpoint records of its split: one set's fingerprint as before, plus the set names."""
        if len(self.snapshots) == 1:
            return {**self.snapshots[0].fingerprint(), "datasets": self.names}
        per_set = {spec.name: snap.fingerprint() for spec, snap in zip(self.specs, self.snapshots, strict=True)}
        return {"datasets": self.names, "splits_dir": ", ".join(v["splits_dir"] for v in per_set.values()),
                **{key: "+".join(str(v[key]) for v in per_set.values()) for key in ("train_sha1", "val_sha1",
                                                                                   "test_sha1")}}

    def check_unchanged(self, during: str) -> None:
        for snap in self.snapshots:
            snap.check_unchanged(during)

    def _joined(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        """Each set's rows with their files and mask rule; ids qualified by the set when there are several."""
        several = len(self.specs) > 1
        out = []
        for spec, snap, table in zip(self.specs, self.snapshots, tables, strict=True):
            table = table.copy()
            paths = _resolver(spec, self.dataset_dir, snap.folder)
            resolved = [paths(row) for row in table.itertuples(index=False)]
            table["image_path"] = [i for i, _ in resolved]
            table["mask_path"] = [m for _, m in resolved]
            table["mask_rule"] = spec.mask_rule
            table["dataset"] = spec.name
            if several:
                table["id"] = [f"{spec.name}{SEPARATOR}{i}" for i in table["id"].astype(str)]
            out.append(table)
        return pd.concat(out, ignore_index=True)


def _resolver(spec: DatasetSpec, dataset_dir, splits_folder: Path):
    """A split row -> (image path, mask path): the built-in set by the row's paths, relative to its folder; any
    other set by the row's id, through its description's current pairs (its folders may move without a re-split)."""
    if spec.kind == "listing":
        from seglib.data.catalog import find_dataset_dir, resolve_listed_path

        if spec.name == BUILTIN or dataset_dir is not None:  # the fetched copy ($SEGLIB_DATA_DIR) or --data-dir
            folder = find_dataset_dir(dataset_dir)
        else:
            folder = find_dataset_dir(spec.path(spec.root))
        return lambda row: (str(resolve_listed_path(folder, f"_/{row.image}")),
                            str(resolve_listed_path(folder, f"_/{row.mask}")))
    items = spec.pair_set().items.assign(id=lambda t: t["id"].astype(str)).set_index("id")

    def paths(row) -> tuple[str, str]:
        photo_id = str(row.id)
        if photo_id not in items.index:
            raise DataError(f"{display_path(splits_folder)}: photo {photo_id!r} of the split is no longer in the data "
                            f"set {spec.name!r}; re-split it with `seglib data split {spec.name} --overwrite`")
        found = items.loc[photo_id]
        return str(found["image_path"]), str(found["mask_path"])

    return paths


def open_sets(data: str = BUILTIN, *, dataset_dir=None, splits_dir=None,
              during: str = "it was being read") -> SetSplits:
    """The split files of the sets named by `data`, read once. `splits_dir` (tests, --splits-dir) replaces the
    splits folder of a single set; `dataset_dir` the built-in set's folder."""
    names = set_names(data)
    specs = tuple(get(n) for n in names)
    if splits_dir is not None and len(specs) > 1:
        raise DataError("--splits-dir names one splits folder; a run on several sets reads each set's own")
    snapshots = []
    for spec in specs:
        folder = Path(splits_dir) if splits_dir is not None else spec.splits_dir()
        if not (folder / "train.csv").is_file() and splits_dir is None and spec.name != BUILTIN:
            raise DataError(f"{display_path(folder)}: data set {spec.name!r} has no split yet; write one with "
                            f"`seglib data split {spec.name}`")
        snapshots.append(snapshot_splits(folder, during=during))
    return SetSplits(specs, tuple(snapshots), dataset_dir)


def split_test_pairs(name: str, split: str = "test"):
    """The test split (or `split`: val) of registered set `name` as an evaluation set (`data.external.PairSet`
    named NAME-test, NAME-val)."""
    from seglib.data.external import PairSet

    sets = open_sets(name, during=f"its {split} split was being read")
    items = sets.table(split)
    spec = sets.specs[0]
    return PairSet(f"{name}-{split}", items[["id", "image_path", "mask_path"]], spec.mask_rule,
                   f"{spec.source or spec.description} ({split} split, {display_path(sets.folder)})", registered=True,
                   dataset=name)


def photo_hash(path) -> str:
    """A short hash of a photo file's bytes: how a photo is recognised under any name, in any set."""
    import hashlib

    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha1").hexdigest()[:16]
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def photo_hashes(paths) -> set[str]:
    """`photo_hash` of each photo: how a checkpoint recognises its training photos under any name."""
    return {photo_hash(p) for p in paths}


def check_apart_by_content(parts: dict[str, pd.DataFrame], data: str) -> None:
    """Refuse training where a photo of a later part (val, then test) has the same bytes as a photo of an earlier
    one (train, then val): ids differ for a copy registered under another name or id, bytes do not. Copies within
    one part are allowed (a set's own duplicates are kept in one split together)."""
    first: dict[str, tuple[str, str]] = {}  # photo hash -> (part, id) where it was first seen
    for part, table in parts.items():
        clashes = []
        for photo_id, path in zip(table["id"].astype(str), table["image_path"], strict=True):
            seen = first.setdefault(photo_hash(path), (part, photo_id))
            if seen[0] != part:
                clashes.append(f"{photo_id} = {seen[1]} ({seen[0]})")
        if clashes:
            harm = "choose the epoch and the threshold on" if part == "val" else "be scored on"
            raise DataError(f"data={data}: {len(clashes)} {part} photo(s) have the same bytes as photos of another "
                            f"split ({', '.join(clashes[:3])}{', ...' if len(clashes) > 3 else ''}); the model "
                            f"would {harm} photos it trained on. A set registered twice? Train on one copy, or "
                            "remove the copied photos")


def same_bytes_as_trained(data_split: dict | None, items: pd.DataFrame) -> list[str]:
    """The ids of `items` whose photo has the bytes of one that trained or validated the model (the checkpoint's
    `photo_sha1`; none for a record without it)."""
    trained = set((data_split or {}).get("photo_sha1") or [])
    return [str(i) for i, p in zip(items["id"], items["image_path"], strict=True) if trained and photo_hash(p) in trained]


def check_test_by_content(data_split: dict | None, items: pd.DataFrame, where: str) -> None:
    """Refuse to score a test split holding photos whose bytes trained or validated the model (the checkpoint's
    `photo_sha1`): a copy under another id or set is caught where the ids are not."""
    overlap = same_bytes_as_trained(data_split, items)
    if overlap:
        raise DataError(f"{where}: {len(overlap)} of its {len(items)} photos ({', '.join(overlap[:3])}"
                        f"{', ...' if len(overlap) > 3 else ''}) have the same bytes as photos that trained or "
                        "validated this model (copies under other ids or sets); test cannot measure it. Score "
                        "another set's test split (--dataset NAME), or retrain on a split without the copies")


def seen_photos(data_split: dict | None, pairs) -> set[str]:
    """The ids of `pairs` that trained or validated the model, by the checkpoint's record: the photos' bytes where
    it records them, else the ids of a registered set (an empty set where it records neither)."""
    if data_split and data_split.get("photo_sha1"):
        return set(same_bytes_as_trained(data_split, pairs.items))
    if getattr(pairs, "dataset", ""):
        seen = ids_from(data_split, pairs.dataset, "train_ids") | ids_from(data_split, pairs.dataset, "val_ids")
        return set(pairs.items["id"].astype(str)) & seen
    return set()


def check_not_trained_on(data_split: dict | None, pairs) -> None:
    """Refuse to score photos that trained or validated the model (the checkpoint's record decides: the photos'
    bytes where it records them, else the ids of a registered set): such a set is not external to the model, only
    a split of it that did not train is scored."""
    overlap = sorted(seen_photos(data_split, pairs))
    if overlap:
        shown = f"{len(overlap)} of its {len(pairs.items)} photos ({', '.join(overlap[:3])}" + \
            f"{', ...' if len(overlap) > 3 else ''})"
        dataset = getattr(pairs, "dataset", "")
        if pairs.name in (f"{dataset}-test", f"{dataset}-val"):  # already a split: its bytes match photos that trained the model
            raise DataError(f"{pairs.name}: {shown} have the same bytes as photos that trained or validated this "
                            f"model (the set {dataset!r}, or a copy of its photos, trained it); no split of "
                            f"{dataset!r} measures this model")
        raise DataError(f"{pairs.name}: {shown} trained or validated this model, so it is not an external set for "
                        f"it; score a registered set's test split instead (--dataset {dataset or 'NAME'})")
