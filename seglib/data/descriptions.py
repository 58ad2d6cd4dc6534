"""Registered data sets: one small description per set, `data/datasets/NAME.yaml`, the same kind for every set.

A description says where the pairs come from (`kind`: `listing`, a data set folder with a `masks,images` train.csv
like the built-in one; `folders`, an image folder and a mask folder matched by file stem plus `mask_suffix`;
`pairs`, a CSV with image and mask columns; a `folders` set may instead list several `parts`, each an image and a
mask folder, and a part may be the set's own split (`split: test`: those photos are its test split, whatever the
seed); `coco`, a COCO JSON, or `labelstudio`, a Label Studio JSON export, whose person masks `seglib data add`
rasterised into `data/derived/NAME/`, listed with their photos in its `pairs.csv`), how its masks are read
(`mask_rule`, see `data.mask_rules`), its source and licence, and how to fetch it where it can be fetched. Paths may use
`${VARIABLE:-default}` and are relative to the project unless absolute. The built-in sets (`human-seg`,
`pennfudan`, `viton`) are such files, committed in the project. Here they are read and checked, and say where their
files are; `data.registry` adds sets and `data.fence` keeps every write out of their folders.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import yaml

from seglib.data.external import PairSet, pairs_from_csv, pairs_from_folders
from seglib.data.mask_rules import MaskRule
from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.paths import SPLITS, display_path
from seglib.settings import AUTOMATIC_LABELS

COCO, LABELSTUDIO = "coco", "labelstudio"  # the kinds whose masks `data add` draws from an annotation file
KINDS = ("listing", "folders", "pairs", COCO, LABELSTUDIO)
BUILTIN = "human-seg"  # the workbook's own data set: what every command uses when no set is named
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
EXTERNAL_CHECK = "external-check"  # the `role` of the set models are checked on after a decision


@dataclass(frozen=True)
class FolderPart:
    """One image folder and its mask folder of a `folders` set with several parts; `split`: the split all its
    photos belong to (a set's own test part), or "" (dealt by the seeded split)."""

    images: str
    masks: str
    split: str = ""


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
    labelstudio: str = ""  # labelstudio: the Label Studio JSON export the masks were made from
    description: str = ""
    source: str = ""
    licence: str = ""
    fetch: str = ""  # the command that fetches it, where it can be fetched
    role: str = ""  # EXTERNAL_CHECK: the set the studies and the documentation check models on, after a decision
    title: str = ""  # how prose names it (default: its name)
    labels: str = ""  # who drew the masks: "" a person, "automatic" a program (training may then use ignore_band)
    n_pairs: int = 0  # at registration
    content_sha1: str = ""  # at registration: ids, image and mask bytes, mask rule (`data.external.content_hash`)
    builtin: bool = False
    parts: tuple[FolderPart, ...] = ()  # folders: several image/mask folder pairs (instead of images and masks)
    fractions: tuple[tuple[str, float], ...] = ()  # the split's shares of the photos no part fixes (default 70/15/15)

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
        elif self.kind in (COCO, LABELSTUDIO) and (items := _coco_pairs(self)) is not None:
            return PairSet(self.name, items, self.mask_rule, self.source or str(self.path(self.annotation_file())),
                           registered=True)
        else:
            found = self._folder_pairs()
        return PairSet(self.name, found.items, self.mask_rule, self.source or found.source, registered=True,
                       left_out=found.left_out)

    def folder_parts(self) -> tuple[FolderPart, ...]:
        """A `folders` or `coco` set's image/mask folder pairs: its `parts`, else its one `images` and `masks`."""
        return self.parts or (FolderPart(self.images, self.masks),)

    def _folder_pairs(self) -> PairSet:
        """Every part's pairs, each photo id once across the parts; a part's folder that is not there names the
        command that fetches the set, where it can be fetched."""
        found = []
        for part in self.folder_parts():
            images, masks = self.path(part.images), self.path(part.masks)
            missing = next((f for f in (images, masks) if not f.exists()), None)
            if missing is not None and self.fetch:
                variable = _VARIABLE.search(part.images)
                raise DataError(f"{display_path(missing)}: the {self.title or self.name} photos are not here; fetch "
                                f"them with `{self.fetch}`" + (f" (or point ${variable.group(1)} at a copy)"
                                                               if variable else ""))
            found.append(pairs_from_folders(images, masks, mask_suffix=self.mask_suffix, mask_rule=self.mask_rule,
                                            name=self.name))
        items = pd.concat([f.items for f in found], ignore_index=True)
        twice = items["id"][items["id"].duplicated()]
        if len(twice):
            raise DataError(f"{display_path(self.description_file())}: photo {twice.iloc[0]!r} is in two of its parts"
                            f"{f' (and {len(twice) - 1} more)' if len(twice) > 1 else ''}; each photo id belongs "
                            "to one part")
        return PairSet(self.name, items, self.mask_rule, found[0].source,
                       left_out=tuple(sorted(x for f in found for x in f.left_out)))

    def fixed_splits(self) -> dict[str, str]:
        """{photo id: split} of the photos a part places in a split of its own (`split: test`); {} for none."""
        fixed = {}
        for part in self.parts:
            if part.split:
                found = pairs_from_folders(self.path(part.images), self.path(part.masks),
                                           mask_suffix=self.mask_suffix, mask_rule=self.mask_rule, name=self.name)
                fixed.update(dict.fromkeys(found.items["id"].astype(str), part.split))
        return fixed

    def split_fractions(self) -> dict[str, float] | None:
        """The split's shares of the photos no part fixes (`fractions`), None for the default."""
        return dict(self.fractions) if self.fractions else None

    def splits_dir(self) -> Path:
        """Where its committed split lives: data/splits/ for the workbook's own set, data/splits/NAME/ for the
        others (for a set added under $SEGLIB_DATASETS_DIR: `splits/NAME` beside that folder)."""
        if self.name == BUILTIN:
            return paths.splits_dir()
        return (paths.splits_dir() if self.builtin else paths.datasets_dir().parent / "splits") / self.name

    def folders(self) -> list[Path]:
        """The folders its photos and masks lie in (a pairs CSV's: each listed file's folder)."""
        if self.kind == "listing":
            return [self.path(self.root)]
        if self.kind != "pairs":
            return [self.path(f) for part in self.folder_parts() for f in (part.images, part.masks)]
        try:
            table = pd.read_csv(self.path(self.pairs), dtype=str)
        except (OSError, ValueError):
            return []
        listed = [v for column in ("image", "mask") if column in table for v in table[column].dropna()]
        return sorted({(self.path(self.pairs).parent / name).parent for name in listed})

    def annotation_file(self) -> str:
        """The file a coco or labelstudio set's masks were drawn from, as stored ('' for the other kinds)."""
        return {COCO: self.coco, LABELSTUDIO: self.labelstudio}.get(self.kind, "")

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
        elif self.kind in (COCO, LABELSTUDIO):
            words = [f"--{self.kind}", shown(self.annotation_file()), "--images", shown(self.images)]
        else:
            words = ["--images", shown(self.images), "--masks", shown(self.masks)]
        rule = self.mask_rule if self.kind not in (COCO, LABELSTUDIO) and self.mask_rule != "binary" else ""
        for option, value in (("--mask-suffix", self.mask_suffix), ("--mask-rule", rule), ("--source", self.source),
                              ("--licence", self.licence)):
            words += [option, value] if value else []
        return shlex.join(["seglib", "data", "add", self.name, *words])

    def to_yaml(self) -> str:
        values = {k: v for k, v in asdict(self).items() if v not in ("", 0, False, ()) or k in ("name", "kind")}
        if self.parts:
            values["parts"] = [{k: v for k, v in asdict(part).items() if v} for part in self.parts]
        if self.fractions:
            values["fractions"] = dict(self.fractions)
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
    values["parts"] = _parts(path, values.get("parts"))
    values["fractions"] = _fractions(path, values.get("fractions"))
    spec = DatasetSpec(**{k: (str(v) if isinstance(v, str) else v) for k, v in values.items()})
    if spec.kind not in KINDS:
        raise DataError(f"{display_path(path)}: kind {spec.kind!r}, expected one of {', '.join(KINDS)}")
    if spec.parts and (spec.kind != "folders" or spec.images or spec.masks):
        raise DataError(f"{display_path(path)}: parts replace images and masks, in a set of kind folders only")
    if spec.name != path.stem:
        raise DataError(f"{display_path(path)}: describes {spec.name!r}; the file must be named {spec.name}.yaml")
    if spec.labels not in ("", AUTOMATIC_LABELS):
        raise DataError(f"{display_path(path)}: labels {spec.labels!r}; leave it out (a person drew the masks) or "
                        f"write {AUTOMATIC_LABELS!r} (a program did)")
    MaskRule.parse(spec.mask_rule)
    return spec


def _parts(path: Path, parts) -> tuple[FolderPart, ...]:
    """`parts`: a list of {images, masks, split (optional: one of SPLITS)}."""
    if parts is None:
        return ()
    known = {"images", "masks", "split"}
    if not isinstance(parts, list) or not all(isinstance(p, dict) and {"images", "masks"} <= set(p) <= known and
                                              all(isinstance(v, str) for v in p.values()) for p in parts):
        raise DataError(f"{display_path(path)}: parts must be a list of image/mask folder pairs (images, masks and "
                        "optionally split)")
    for part in parts:
        if part.get("split", "") not in ("", *SPLITS):
            raise DataError(f"{display_path(path)}: a part's split {part['split']!r}, expected one of "
                            f"{', '.join(SPLITS)}")
    return tuple(FolderPart(**part) for part in parts)


def _fractions(path: Path, fractions) -> tuple[tuple[str, float], ...]:
    """`fractions`: {train, val, test} shares, each 0 or more, summing to 1."""
    if fractions is None:
        return ()
    if not isinstance(fractions, dict) or set(fractions) != set(SPLITS) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in fractions.values()) or \
            abs(sum(fractions.values()) - 1) > 1e-9:
        raise DataError(f"{display_path(path)}: fractions must give train, val and test a share each (0 or more, "
                        "summing to 1)")
    return tuple((name, float(fractions[name])) for name in SPLITS)


def registered(*, skip_unreadable: bool = False) -> dict[str, DatasetSpec]:
    """Every registered set by name: the built-in descriptions, then those in `paths.datasets_dir()`.
    `skip_unreadable`: a description that cannot be read, or a $SEGLIB_DATASETS_DIR naming a file, is passed over
    (what a fence over every set's folders needs) instead of raising."""
    folders = [paths.BUILTIN_DATASETS_DIR]
    try:
        folders.append(paths.datasets_dir())
    except SeglibError:
        if not skip_unreadable:
            raise
    found: dict[str, DatasetSpec] = {}
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            try:
                found.setdefault(path.stem, read_spec(path))
            except DataError:
                if not skip_unreadable:
                    raise
    return found


def get(name: str) -> DatasetSpec:
    """The registered set `name`, or a DataError listing the names there are."""
    sets = registered()
    if name not in sets:
        raise DataError(f"data set {name!r} is not registered (registered: {', '.join(sets) or 'none'}); add it "
                        "with `seglib data add NAME --images DIR --masks DIR`")
    return sets[name]


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


def external_check_set() -> DatasetSpec:
    """The registered set whose role is EXTERNAL_CHECK (the first by name if several say so)."""
    for spec in registered().values():
        if spec.role == EXTERNAL_CHECK:
            return spec
    raise DataError(f"no registered set has `role: {EXTERNAL_CHECK}` (the set models are checked on)")


def _coco_pairs(spec: DatasetSpec) -> pd.DataFrame | None:
    """A COCO or Label Studio set's pairs as its `pairs.csv` lists them (None for a COCO set made before there was
    one)."""
    from seglib.data.coco import listed_pairs

    return listed_pairs(spec.path(spec.images), spec.path(spec.masks))
