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
from seglib.data.descriptions import (
    BUILTIN,
    COCO,
    LABELSTUDIO,
    NAME_PATTERN,
    DatasetSpec,
    check_name,
    get,
    registered,
)
from seglib.data.external import (
    PENNFUDAN,
    PairSet,
    content_hash,
    external_set,
    fetch_pennfudan,
    pairs_from_csv,
    pairs_from_folders,
)
from seglib.data.mask_rules import MaskRule
from seglib.data.viton import VITON, fetch_viton
from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import is_within, open_image, write_text_atomic
from seglib.infra.locks import exclusive
from seglib.infra.paths import display_path

# The registered sets other than the built-in one that `seglib data fetch NAME` gets: (source, dest) -> (path, message)
FETCHERS = {PENNFUDAN: fetch_pennfudan, VITON: fetch_viton}
ANNOTATION_FILES = {COCO: "COCO file", LABELSTUDIO: "Label Studio export"}  # how messages name each kind's file
DERIVED_MARK = ".made-by-seglib-data-add"  # in each folder of derived masks `data add` made: it may replace those only


def fetch_set(name: str | None = None, source=None, dest=None) -> str:
    """`seglib data fetch [NAME]`: the set fetched (the built-in one when no name is given), as its description's
    `fetch` says; the message."""
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


def add_dataset(name: str, *, images=None, masks=None, pairs=None, annotations: tuple[str, str | Path] | None = None,
                mask_rule: str | None = None, mask_suffix: str = "",
                about: dict[str, str] | None = None) -> tuple[DatasetSpec, tuple]:
    """Register a set from an image and a mask folder, a pairs CSV, or an annotation file with its image folder
    (`annotations`: (COCO, a COCO JSON) or (LABELSTUDIO, a Label Studio JSON export)); `about` gives its `source`,
    `licence` and `description` (the DatasetSpec fields of those names). Returns the description and the (path,
    why) of each file a folder scan left out (`PairSet.left_out`), or of each task of an export nobody labelled.

    Every pair is read first; any problem (missing or unreadable masks, a size that is not a uniform rescale,
    colour or non-binary masks without a rule, a rule that leaves every mask empty, two photos with one stem,
    images that are their own masks; for an annotation file, a bad entry or a mask folder it may not replace) is a
    DataError naming the file, and nothing is registered."""
    # 1. the name, and one source
    check_name(name)
    if sum(v is not None for v in (masks, pairs, annotations)) != 1:
        raise DataError("give one source: --images DIR --masks DIR, --pairs FILE.csv, --coco FILE.json --images DIR"
                        " or --labelstudio FILE.json --images DIR")
    kind, export = annotations if annotations is not None else ("", None)
    if images is None and pairs is None:
        raise DataError(f"{'--masks' if masks is not None else f'--{kind}'} needs --images (the photo folder)")
    rule = MaskRule.parse(mask_rule or "binary").text
    derived = paths.derived_data_dir() / name
    reads = []  # from an annotation file: what the command reads, neither inside its masks' folder nor holding it
    if export is not None:
        reads = [(Path(images), "the photo folder (--images)"), (Path(export), f"the {ANNOTATION_FILES[kind]} "
                                                                               f"(--{kind})")]
        refuse_derived_folder(name, derived, reads)
    staging = None  # an annotation file's set: this command's own folder for the masks until they are registered
    fields_ = {"name": name, "mask_rule": rule, **(about or {})}
    try:
        # 2. the pairs (an annotation file's: masks rasterised into a staging folder first)
        if export is not None:
            derived.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.adding-", dir=derived.parent))
            staging.chmod(0o755)
            items, left_out = drawn_masks(kind, export, images, staging)
            (staging / DERIVED_MARK).write_text(f"made by seglib data add {name}: it replaces this folder (and no "
                                                "other) when the set is added again\n", encoding="utf-8")
            spec = DatasetSpec(kind=kind, images=_stored(images), masks=_stored(derived), **{kind: _stored(export)},
                               **{**fields_, "mask_rule": "binary"})
            found = PairSet(name, items, "binary", str(export), left_out=left_out)
        elif pairs is not None:
            spec = DatasetSpec(kind="pairs", pairs=_stored(pairs), **fields_)
            found = pairs_from_csv(pairs, mask_rule=rule, name=name)
        else:
            spec = DatasetSpec(kind="folders", images=_stored(images), masks=_stored(masks), mask_suffix=mask_suffix,
                               **fields_)
            found = pairs_from_folders(images, masks, mask_suffix=mask_suffix, mask_rule=rule, name=name)
        # 3. every pair read by its rule: nothing is registered when one is wrong
        table = inspect_pairs(found.items, MaskRule.parse(spec.mask_rule), raise_first=True)
        if not (table["fg_fraction"] > 0).any() and export is not None:
            raise DataError(f"{export}: none of its {len(table)} photos has a person region (a region or annotation "
                            "labelled 'person')")
        if not (table["fg_fraction"] > 0).any():
            raise DataError(f"{display_path(found.items['mask_path'].iloc[0])}: the mask rule {rule!r} leaves every "
                            f"one of the {len(table)} masks empty; give the rule that marks people (--mask-rule)")
        spec = DatasetSpec(**{**asdict(spec), "n_pairs": len(table),
                              "content_sha1": content_hash(found.items, spec.mask_rule)})
        # 4. written at once, under a lock: the masks in place, then the description
        target = paths.datasets_dir() / f"{name}.yaml"
        with exclusive(target, f"data set description {display_path(target)}"):
            check_name(name)
            if export is not None:
                refuse_derived_folder(name, derived, reads)
                shutil.rmtree(derived, ignore_errors=True)
                os.replace(staging, derived)
            write_text_atomic(target, spec.to_yaml())
        return spec, found.left_out
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def drawn_masks(kind: str, export, images, out_dir: Path) -> tuple[pd.DataFrame, tuple]:
    """The masks of an annotation file (`kind` COCO or LABELSTUDIO) drawn into `out_dir`: (pairs, left out)."""
    if kind == LABELSTUDIO:
        from seglib.data.labelstudio import rasterise_labelstudio

        return rasterise_labelstudio(export, images, out_dir)
    if kind != COCO:
        raise ValueError(f"annotations of kind {kind!r}: expected {COCO} or {LABELSTUDIO}")
    from seglib.data.coco import rasterise_coco

    return rasterise_coco(export, images, out_dir), ()


def refuse_derived_folder(name: str, derived: Path, reads: list[tuple[Path, str]]) -> None:
    """A DataError, one line, unless `data add` may put the masks of the COCO or Label Studio set `name` in
    `derived`, replacing
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
         "kept in one split together" + ("; a copy of a photo of a part with its own split (test) is in no split"
                                         if any(part.split for part in spec.parts) else "")),
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
    pairs = spec.n_pairs or ""
    try:  # a set that can be fetched and is not here says how to get it
        if spec.fetch and not all(folder.is_dir() for folder in spec.folders()):
            pairs = f"not fetched ({spec.fetch})"
    except SeglibError:  # a path it cannot expand: `data check NAME` says so
        pass
    return {"name": spec.name, "kind": spec.kind, "pairs": pairs, "mask rule": spec.mask_rule,
            "split": display_path(spec.splits_dir()) if split.is_file() else "none (seglib data split NAME)",
            "source": spec.source or spec.description}


def as_table(sets: dict[str, DatasetSpec]) -> str:
    frame = pd.DataFrame([describe(s) for s in sets.values()])
    return frame.to_string(index=False) if not frame.empty else "no data set registered"


__all__ = ["add_dataset", "as_table", "check_registered", "inspect_pairs", "set_root"]


NOT_FETCHED, NO_SPLIT = "not fetched", "no split yet"  # why a registered set is not scored on this machine


def set_status() -> dict[str, str]:
    """Every registered set by name, the built-in one first: '' where its photos and its val and test splits are
    on this machine, else why not (NOT_FETCHED, NO_SPLIT)."""
    from seglib.data.catalog import find_dataset_dir

    found = {}
    for name, spec in sorted(registered().items(), key=lambda item: item[0] != BUILTIN):
        try:
            if spec.kind == "listing":
                find_dataset_dir(None if name == BUILTIN else spec.path(spec.root))
                fetched = True
            else:
                fetched = bool(spec.folders()) and all(Path(f).exists() for f in spec.folders())
        except (DataError, SeglibError):
            fetched = False
        split = all((spec.splits_dir() / f"{s}.csv").is_file() for s in ("val", "test"))
        found[name] = "" if fetched and split else NOT_FETCHED if not fetched else NO_SPLIT
    return found


def present_sets() -> list[str]:
    """The registered sets whose photos and splits are on this machine, the built-in one first."""
    return [name for name, why in set_status().items() if not why]
