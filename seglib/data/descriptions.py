"""Registered data sets: one small description per set, `data/datasets/NAME.yaml`, the same kind for every set.

A description says where the pairs come from (`kind`: `listing`, a data set folder with a `masks,images` train.csv
like the built-in one; `folders`, an image folder and a mask folder matched by file stem plus `mask_suffix`;
`pairs`, a CSV with image and mask columns; `coco`, a COCO JSON whose person masks `seglib data add` rasterised
into `data/derived/NAME/`, listed with their photos in its `pairs.csv`), how its masks are read (`mask_rule`, see
`data.mask_rules`), its source and licence, and how to fetch it where it can be fetched. Paths may use
`${VARIABLE:-default}` and are relative to the project unless absolute. The two built-in sets (`human-seg`,
`pennfudan`) are two such files, committed in the project. Here they are read and checked, and say where their
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
from seglib.infra.paths import display_path

KINDS = ("listing", "folders", "pairs", "coco")
BUILTIN = "human-seg"  # the workbook's own data set: what every command uses when no set is named
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
EXTERNAL_CHECK = "external-check"  # the `role` of the set models are checked on after a decision


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

    def folders(self) -> list[Path]:
        """The folders its photos and masks lie in (a pairs CSV's: each listed file's folder)."""
        if self.kind == "listing":
            return [self.path(self.root)]
        if self.kind != "pairs":
            return [self.path(self.images), self.path(self.masks)]
        try:
            table = pd.read_csv(self.path(self.pairs), dtype=str)
        except (OSError, ValueError):
            return []
        listed = [v for column in ("image", "mask") if column in table for v in table[column].dropna()]
        return sorted({(self.path(self.pairs).parent / name).parent for name in listed})

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
    """A COCO set's pairs as its `pairs.csv` lists them (None for one made before there was one)."""
    from seglib.data.coco import listed_pairs

    return listed_pairs(spec.path(spec.images), spec.path(spec.masks))
