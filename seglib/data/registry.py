"""Adding, checking and listing registered data sets (their descriptions: `data.descriptions`).

`data add` reads every pair first and registers nothing when one is wrong; it replaces no folder it did not make
(it marks `data/derived/NAME/` as its own), and `data check NAME` compares the set's files with the content hash
stored at registration.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from seglib.data.check import ASPECT_TOLERANCE, CheckReport, Quirk, relation
from seglib.data.descriptions import BUILTIN, NAME_PATTERN, DatasetSpec, check_name, get, registered
from seglib.data.external import (
    PENNFUDAN,
    PairSet,
    content_hash,
    external_set,
    pairs_from_csv,
    pairs_from_folders,
)
from seglib.data.mask_rules import MaskRule
from seglib.infra import paths
from seglib.infra.errors import DataError
from seglib.infra.io import is_within, open_image, write_text_atomic
from seglib.infra.locks import exclusive
from seglib.infra.paths import display_path

DERIVED_MARK = ".made-by-seglib-data-add"  # in each folder of derived masks `data add` made: it may replace those only


def fetch_set(name: str | None = None, source=None, dest=None) -> str:
    """`seglib data fetch [NAME]`: the set fetched (the built-in one when no name is given), as its description's
    `fetch` says; the message."""
    from seglib.data.external import FETCHERS
    from seglib.data.fetch import fetch_dataset

    spec = get(name or BUILTIN)
    if spec.name == BUILTIN:
        return fetch_dataset(source, dest).message
    if not spec.fetch or spec.name not in FETCHERS:
        raise DataError(f"data set {spec.name!r}: seglib cannot fetch it; its files come from {spec.source or '?'}")
    return FETCHERS[spec.name](source, dest)[1]


def _stored(path: str | Path) -> str:
    """How a path is written in a description: relative to the project when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(paths.PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def add_dataset(name: str, *, images=None, masks=None, pairs=None, coco=None, mask_rule: str | None = None,
                mask_suffix: str = "", about: dict[str, str] | None = None) -> tuple[DatasetSpec, tuple]:
    """Register a set from an image and a mask folder, a pairs CSV, or a COCO JSON with its image folder; `about`
    gives its `source`, `licence` and `description` (the DatasetSpec fields of those names). Returns the
    description and the (path, why) of each file a folder scan left out (`PairSet.left_out`).

    Every pair is read first; any problem (missing or unreadable masks, a size that is not a uniform rescale,
    colour or non-binary masks without a rule, a rule that leaves every mask empty, two photos with one stem,
    images that are their own masks; for COCO, a bad entry or a mask folder it may not replace) is a DataError
    naming the file, and nothing is registered."""
    # 1. the name, and one source
    check_name(name)
    if sum(v is not None for v in (masks, pairs, coco)) != 1:
        raise DataError("give one source: --images DIR --masks DIR, --pairs FILE.csv, or --coco FILE.json "
                        "--images DIR")
    if images is None and pairs is None:
        raise DataError(f"{'--masks' if masks is not None else '--coco'} needs --images (the photo folder)")
    rule = MaskRule.parse(mask_rule or "binary").text
    derived = paths.derived_data_dir() / name
    reads = []  # COCO: what the command reads, neither inside the folder of its masks nor holding it
    if coco is not None:
        reads = [(Path(images), "the photo folder (--images)"), (Path(coco), "the COCO file (--coco)")]
        refuse_derived_folder(name, derived, reads)
    staging = None  # COCO: this command's own folder for the masks until they are registered
    fields_ = {"name": name, "mask_rule": rule, **(about or {})}
    try:
        # 2. the pairs (COCO: masks rasterised into a staging folder first)
        if coco is not None:
            from seglib.data.coco import rasterise_coco

            derived.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.adding-", dir=derived.parent))
            staging.chmod(0o755)
            items = rasterise_coco(coco, images, staging)
            (staging / DERIVED_MARK).write_text(f"made by seglib data add {name}: it replaces this folder (and no "
                                                "other) when the set is added again\n", encoding="utf-8")
            spec = DatasetSpec(kind="coco", images=_stored(images), masks=_stored(derived), coco=_stored(coco),
                               **{**fields_, "mask_rule": "binary"})
            found = PairSet(name, items, "binary", str(coco))
        elif pairs is not None:
            spec = DatasetSpec(kind="pairs", pairs=_stored(pairs), **fields_)
            found = pairs_from_csv(pairs, mask_rule=rule, name=name)
        else:
            spec = DatasetSpec(kind="folders", images=_stored(images), masks=_stored(masks), mask_suffix=mask_suffix,
                               **fields_)
            found = pairs_from_folders(images, masks, mask_suffix=mask_suffix, mask_rule=rule, name=name)
        # 3. every pair read by its rule: nothing is registered when one is wrong
        table = inspect_pairs(found.items, MaskRule.parse(spec.mask_rule), raise_first=True)
        if not (table["fg_fraction"] > 0).any() and coco is not None:
            raise DataError(f"{coco}: none of its {len(table)} images has a person region (an annotation of a "
                            "'person' category)")
        if not (table["fg_fraction"] > 0).any():
            raise DataError(f"{display_path(found.items['mask_path'].iloc[0])}: the mask rule {rule!r} leaves every "
                            f"one of the {len(table)} masks empty; give the rule that marks people (--mask-rule)")
        spec = DatasetSpec(**{**asdict(spec), "n_pairs": len(table),
                              "content_sha1": content_hash(found.items, spec.mask_rule)})
        # 4. written at once, under a lock: the masks in place, then the description
        target = paths.datasets_dir() / f"{name}.yaml"
        with exclusive(target, f"data set description {display_path(target)}"):
            check_name(name)
            if coco is not None:
                refuse_derived_folder(name, derived, reads)
                shutil.rmtree(derived, ignore_errors=True)
                os.replace(staging, derived)
            write_text_atomic(target, spec.to_yaml())
        return spec, found.left_out
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def refuse_derived_folder(name: str, derived: Path, reads: list[tuple[Path, str]]) -> None:
    """A DataError, one line, unless `data add` may put the masks of the COCO set `name` in `derived`, replacing
    what is there: a folder it made (its mark inside) or none, neither inside nor holding what the command reads
    (`reads`: (folder, what it is)) or a folder of another registered set."""
    from seglib.data.fence import data_folders

    # 1. what this command reads, and the other sets' folders (data/derived itself holds every derived folder)
    shown = display_path(derived)
    others = [(Path(f), what) for f, what in data_folders() if Path(f).resolve() != derived.parent.resolve()]
    broad = {paths.PROJECT_ROOT.resolve(), Path.home().resolve(), Path("/")}
    for folder, what in [*reads, *others]:
        if is_within(folder, derived):
            raise DataError(f"{shown}: the folder `data add` makes for the masks of {name} holds {what} ({folder}), "
                            f"which replacing it would delete; nothing registered: move that out of {shown} or "
                            "choose another NAME")
        if folder.resolve() not in broad and is_within(derived, folder):
            raise DataError(f"{shown}: the folder `data add` makes for the masks of {name} lies inside {what} "
                            f"({folder}); nothing registered: keep photos and COCO files out of "
                            f"{display_path(derived.parent)}")
    # 2. a folder already there that `data add` did not make
    if derived.exists() and not (derived / DERIVED_MARK).is_file():
        raise DataError(f"{shown}: already exists and `data add` did not make it (no {DERIVED_MARK} inside); "
                        f"refusing to replace it, nothing registered: move it elsewhere or choose another NAME")


def scored_set(spec: str) -> PairSet:
    """What `--external SPEC` scores: every photo of a registered set (other than the built-in one) by name, else
    `data.external.external_set` (pennfudan, a pairs CSV, IMAGES_DIR:MASKS_DIR)."""
    sets = registered() if NAME_PATTERN.fullmatch(spec) and spec != PENNFUDAN else {}
    if spec in sets and spec != BUILTIN:
        found = sets[spec].pair_set()
        return PairSet(spec, found.items, found.mask_rule, found.source, registered=True, dataset=spec)
    return external_set(spec)


def inspect_pairs(items: pd.DataFrame, rule: MaskRule, *, raise_first: bool = False) -> pd.DataFrame:
    """Per-pair facts (sizes, relation, foreground fraction, orientation, photo hash) read by `rule`.

    Problems are one line each, naming the file; `raise_first` raises the first with the count of the others,
    else they are collected in the result's `attrs["problems"]`."""
    import hashlib

    rows, problems = [], []
    first_of = items.drop_duplicates("id").set_index("id")["image_path"]
    for row in items[items["id"].duplicated()].itertuples(index=False):
        problems.append(f"{row.image_path}: shares its id (file stem) {row.id!r} with {Path(first_of[row.id]).name}; "
                        "masks are matched by stem, so rename one of them")
    for row in items.drop_duplicates("id").itertuples(index=False):
        image_path, mask_path = Path(row.image_path), Path(row.mask_path)
        try:
            if image_path.resolve() == mask_path.resolve():
                raise DataError(f"{image_path}: is its own mask; the images and the masks are the same files "
                                "(give the mask folder with --masks)")
            with open_image(image_path) as photo:
                size, orientation, image_mode = photo.size, int(photo.getexif().get(274, 1)), photo.mode
            with open_image(mask_path) as stored:
                mask_mode = stored.mode
            mask = rule.read(mask_path)
        except DataError as exc:
            problems.append(str(exc) + (" (a colour mask needs --mask-rule rgb:R,G,B)"
                                        if "colour mask" in str(exc) else ""))
            continue
        kind = relation(size, (mask.shape[1], mask.shape[0]))
        if kind == "mismatch":
            problems.append(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} is not a rescale of its image "
                            f"{image_path.name} ({size[0]}x{size[1]}, tolerance {ASPECT_TOLERANCE:.0%})")
            continue
        rows.append({"id": str(row.id), "image_path": str(image_path), "mask_path": str(mask_path),
                     "image_width": size[0], "image_height": size[1], "mask_width": mask.shape[1],
                     "mask_height": mask.shape[0], "size_relation": kind, "scale": size[0] / mask.shape[1],
                     "image_mode": image_mode, "mask_mode": mask_mode, "aspect_ratio": size[0] / size[1],
                     "exif_orientation": orientation, "mask_rule": rule.text, "fg_fraction": float(mask.mean()),
                     "image_sha1": hashlib.sha1(image_path.read_bytes()).hexdigest()})
    if problems and raise_first:
        more = f" (and {len(problems) - 1} more problems; nothing registered)" if len(problems) > 1 else \
            " (nothing registered)"
        raise DataError(problems[0] + more)
    table = pd.DataFrame(rows)
    table.attrs["problems"] = problems
    return table


def check_registered(name: str, data_dir=None) -> CheckReport:
    """`seglib data check NAME`: every problem, one line each, and the quirks found with counts (the built-in set
    read from `data_dir` when given)."""
    spec = get(name)
    if spec.kind == "listing":
        from seglib.data.check import check_dataset

        return check_dataset(data_dir if data_dir is not None else spec.path(spec.root))
    found = spec.pair_set()
    table = inspect_pairs(found.items, MaskRule.parse(spec.mask_rule))
    report = CheckReport(set_root(found.items), table, [*table.attrs["problems"], *_changes(spec, found)])
    report.quirks = _quirks(table, spec)
    return report


def _changes(spec: DatasetSpec, found: PairSet) -> list[str]:
    """A problem when the set's photos or masks are not what was registered (its stored content hash), with the
    command that registers them again; none for a set without a stored hash."""
    if not spec.content_sha1:
        return []
    try:
        now = content_hash(found.items, spec.mask_rule)
    except DataError:  # a file that cannot be read: a problem of its own already
        return []
    if now == spec.content_sha1:
        return []
    shown = display_path(spec.description_file())
    return [f"{shown}: the photos or masks of {spec.name} changed since it was registered (content {now}, "
            f"registered {spec.content_sha1}); check them, and if the change is meant, delete {shown} and register "
            f"the set again: `{spec.add_command()}`"]


def set_root(items: pd.DataFrame) -> Path:
    """The deepest folder holding every photo and mask of a set: split files name them relative to it."""
    folders = [str(Path(p).resolve().parent) for p in (*items["image_path"], *items["mask_path"])]
    return Path(os.path.commonpath(folders))


def _quirks(table: pd.DataFrame, spec: DatasetSpec) -> list[Quirk]:
    if table.empty:
        return []
    counts = [
        ("mask-rescaled", int((table["size_relation"] == "scaled").sum()),
         "masks a uniform rescale of their photo", "photo resized to the mask (scored at mask resolution)"),
        ("exif-orientation", int((table["exif_orientation"] != 1).sum()), "photos with an EXIF rotation tag",
         "pixels used as stored, like the masks"),
        ("duplicate-photos", int(table["image_sha1"].duplicated(keep=False).sum()), "byte-identical photos",
         "kept in one split together"),
        ("empty-masks", int((table["fg_fraction"] == 0).sum()), "masks with no person pixel",
         "kept: photos without people"),
    ]
    if spec.mask_rule != "binary":
        counts.append(("mask-rule", len(table), f"masks read by the rule {spec.mask_rule}", "person = the rule's "
                       "pixels"))
    return [Quirk(name, n, what, action) for name, n, what, action in counts if n]


def describe(spec: DatasetSpec) -> dict:
    """A row of `seglib data list`."""
    split = spec.splits_dir() / "train.csv"
    return {"name": spec.name, "kind": spec.kind, "pairs": spec.n_pairs or "", "mask rule": spec.mask_rule,
            "split": display_path(spec.splits_dir()) if split.is_file() else "none (seglib data split NAME)",
            "source": spec.source or spec.description}


def as_table(sets: dict[str, DatasetSpec]) -> str:
    frame = pd.DataFrame([describe(s) for s in sets.values()])
    return frame.to_string(index=False) if not frame.empty else "no data set registered"


__all__ = ["add_dataset", "as_table", "check_registered", "inspect_pairs", "set_root"]
