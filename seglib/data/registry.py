"""Registered data sets: one small description per set, `data/datasets/NAME.yaml`, the same kind for every set.

A description says where the pairs come from (`kind`: `listing`, a data set folder with a `masks,images` train.csv
like the built-in one; `folders`, an image folder and a mask folder matched by file stem plus `mask_suffix`;
`pairs`, a CSV with image and mask columns; `coco`, a COCO JSON whose person masks `seglib data add` rasterised
into `data/derived/NAME/`, listed with their photos in its `pairs.csv`), how its masks are read (`mask_rule`, see
`data.mask_rules`), its source and licence, and how to fetch it where it can be fetched. Paths may use
`${VARIABLE:-default}` and are relative to the project unless absolute. The two built-in sets (`human-seg`,
`pennfudan`) are two such files, committed in the project.

`data add` replaces no folder it did not make (it marks `data/derived/NAME/` as its own), and `data check NAME`
compares the set's files with the content hash stored at registration.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import yaml

from seglib.data.check import ASPECT_TOLERANCE, CheckReport, Quirk, relation
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

KINDS = ("listing", "folders", "pairs", "coco")
BUILTIN = "human-seg"  # the workbook's own data set: what every command uses when no set is named
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
EXTERNAL_CHECK = "external-check"  # the `role` of the set models are checked on after a decision
DERIVED_MARK = ".made-by-seglib-data-add"  # in each folder of derived masks `data add` made: it may replace those only


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set, as its `NAME.yaml` describes it."""

    name: str
    kind: str
    images: str = ""  # folders, coco: the photos
    masks: str = ""  # folders: the masks (coco: the rasterised masks)
    pairs: str = ""  # pairs: the CSV
    root: str = ""  # listing: the data set folder (or the folder holding it)
    mask_suffix: str = ""  # folders: mask file = <image stem><mask_suffix>.png
    mask_rule: str = "binary"
    coco: str = ""  # coco: the annotation file the masks were made from
    description: str = ""
    source: str = ""
    licence: str = ""
    fetch: str = ""  # the command that fetches it, where it can be fetched
    role: str = ""  # EXTERNAL_CHECK: the set the studies and the documentation check models on, after a decision
    title: str = ""  # how prose names it (default: its name)
    n_pairs: int = 0  # at registration
    content_sha1: str = ""  # at registration: ids, image and mask bytes, mask rule (`data.external.content_hash`)
    builtin: bool = False

    def path(self, value: str) -> Path:
        """A path field with its variables expanded, relative to the project unless absolute."""
        expanded = _VARIABLE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), value)
        path = paths.user_path(expanded)
        return path if path.is_absolute() else paths.PROJECT_ROOT / path

    def pair_set(self) -> PairSet:
        """Its image/mask pairs as they are on disk now."""
        if self.kind == "listing":
            from seglib.data.catalog import find_dataset_dir, read_pairs_csv

            folder = find_dataset_dir(self.path(self.root))
            items, problems = read_pairs_csv(folder)
            if problems:
                raise DataError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            return PairSet(self.name, items, self.mask_rule, self.source, registered=True)
        if self.kind == "pairs":
            found = pairs_from_csv(self.path(self.pairs), mask_rule=self.mask_rule, name=self.name)
        elif self.kind == "coco" and (items := _coco_pairs(self)) is not None:
            return PairSet(self.name, items, self.mask_rule, self.source or str(self.path(self.coco)), registered=True)
        else:
            found = pairs_from_folders(self.path(self.images), self.path(self.masks), mask_suffix=self.mask_suffix,
                                       mask_rule=self.mask_rule, name=self.name)
        return PairSet(self.name, found.items, self.mask_rule, self.source or found.source, registered=True)

    def splits_dir(self) -> Path:
        """Where its committed split lives: data/splits/ for the workbook's own set, data/splits/NAME/ for the
        others (for a set added under $SEGLIB_DATASETS_DIR: `splits/NAME` beside that folder)."""
        if self.name == BUILTIN:
            return paths.splits_dir()
        return (paths.splits_dir() if self.builtin else paths.datasets_dir().parent / "splits") / self.name

    def description_file(self) -> Path:
        return (paths.BUILTIN_DATASETS_DIR if self.builtin else paths.datasets_dir()) / f"{self.name}.yaml"

    def add_command(self) -> str:
        """The `seglib data add` command that registers this set again from its files (paths as messages show
        them: relative to the project when inside it)."""
        import shlex

        def shown(value: str) -> str:
            return display_path(self.path(value))

        if self.kind == "pairs":
            words = ["--pairs", shown(self.pairs)]
        elif self.kind == "coco":
            words = ["--coco", shown(self.coco), "--images", shown(self.images)]
        else:
            words = ["--images", shown(self.images), "--masks", shown(self.masks)]
        rule = self.mask_rule if self.kind != "coco" and self.mask_rule != "binary" else ""
        for option, value in (("--mask-suffix", self.mask_suffix), ("--mask-rule", rule), ("--source", self.source),
                              ("--licence", self.licence)):
            words += [option, value] if value else []
        return shlex.join(["seglib", "data", "add", self.name, *words])

    def to_yaml(self) -> str:
        values = {k: v for k, v in asdict(self).items() if v not in ("", 0, False) or k in ("name", "kind")}
        return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def read_spec(path: Path) -> DatasetSpec:
    """A description file, checked: known fields, a known kind, a valid name and mask rule."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{display_path(path)}: not a readable data set description ({exc})") from None
    known = {f.name for f in fields(DatasetSpec)}
    if not isinstance(values, dict) or not {"name", "kind"} <= set(values):
        raise DataError(f"{display_path(path)}: a data set description needs at least name and kind")
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"{display_path(path)}: unknown field(s) {', '.join(unknown)}")
    spec = DatasetSpec(**{k: (str(v) if isinstance(v, str) else v) for k, v in values.items()})
    if spec.kind not in KINDS:
        raise DataError(f"{display_path(path)}: kind {spec.kind!r}, expected one of {', '.join(KINDS)}")
    if spec.name != path.stem:
        raise DataError(f"{display_path(path)}: describes {spec.name!r}; the file must be named {spec.name}.yaml")
    MaskRule.parse(spec.mask_rule)
    return spec


def registered() -> dict[str, DatasetSpec]:
    """Every registered set by name: the built-in descriptions, then those in `paths.datasets_dir()`."""
    found: dict[str, DatasetSpec] = {}
    for folder in dict.fromkeys([paths.BUILTIN_DATASETS_DIR, paths.datasets_dir()]):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found.setdefault(path.stem, read_spec(path))
    return found


def get(name: str) -> DatasetSpec:
    """The registered set `name`, or a DataError listing the names there are."""
    sets = registered()
    if name not in sets:
        raise DataError(f"data set {name!r} is not registered (registered: {', '.join(sets) or 'none'}); add it "
                        "with `seglib data add NAME --images DIR --masks DIR`")
    return sets[name]


def external_check_set() -> DatasetSpec:
    """The registered set whose role is EXTERNAL_CHECK (the first by name if several say so)."""
    for spec in registered().values():
        if spec.role == EXTERNAL_CHECK:
            return spec
    raise DataError(f"no registered set has `role: {EXTERNAL_CHECK}` (the set models are checked on)")


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


def check_name(name: str) -> str:
    """A new set's name: lower-case letters, digits, '-' and '_', not one registered already."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DataError(f"data set name {name!r}: use lower-case letters, digits, '-' and '_' (at most 40, "
                        "starting with a letter or digit)")
    for folder in (paths.BUILTIN_DATASETS_DIR, paths.datasets_dir()):
        if (folder / f"{name}.yaml").exists():
            raise DataError(f"data set name {name!r} clashes with the registered set {display_path(folder / name)}"
                            ".yaml; choose another name")
    return name


def _stored(path: str | Path) -> str:
    """How a path is written in a description: relative to the project when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(paths.PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def add_dataset(name: str, *, images=None, masks=None, pairs=None, coco=None, mask_rule: str | None = None,
                mask_suffix: str = "", about: dict[str, str] | None = None) -> DatasetSpec:
    """Register a set from an image and a mask folder, a pairs CSV, or a COCO JSON with its image folder; `about`
    gives its `source`, `licence` and `description` (the DatasetSpec fields of those names).

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
        return spec
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


def _coco_pairs(spec: DatasetSpec) -> pd.DataFrame | None:
    """A COCO set's pairs as its `pairs.csv` lists them (None for one made before there was one)."""
    from seglib.data.coco import listed_pairs

    return listed_pairs(spec.path(spec.images), spec.path(spec.masks))


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


__all__ = ["BUILTIN", "KINDS", "DatasetSpec", "add_dataset", "as_table", "check_registered", "get", "inspect_pairs",
           "registered", "read_spec", "set_root"]
