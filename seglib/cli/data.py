"""`seglib data fetch | add | list | check | split`: the built-in set and any registered one."""

from __future__ import annotations

import sys
from pathlib import Path

from seglib.infra.errors import SeglibError


def add_parser(sub) -> None:
    """Register `seglib data`."""
    data = sub.add_parser("data", help="fetch, register, check and split data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download (or copy from --source) and verify a data set",
                                description="Get a registered set whose description says how it is fetched "
                                            "(its fetch field; seglib data list) and verify its content. Without "
                                            "NAME: the Human Segmentation data set into data/raw (or --dest), "
                                            "train.csv checked by its checksum and every file it lists.")
    fetch.add_argument("name", nargs="?", default=None, metavar="NAME",
                       help="a registered set that can be fetched (default: the workbook's own set, human-seg)")
    fetch.add_argument("--source", help="local folder, .zip or URL (default: $SEGLIB_DATASET_SOURCE for the "
                                        "built-in set, $SEGLIB_<NAME>_SOURCE for another, else where it is published)")
    fetch.add_argument("--dest", type=Path, help="folder to put the set in (default: data/raw for the built-in set, "
                                                 "data/external for another)")
    fetch.set_defaults(func=cmd_data_fetch)
    check = data_sub.add_parser("check", help="validate every pair and report the data set's quirks",
                                description="Read every image/mask pair of the data set and report problems "
                                            "(unreadable files, colour or non-binary masks, a mask that is not a rescale of "
                                            "its photo) and its quirks; "
                                            "exit status 1 when a problem is found. Nothing is written.")
    check.add_argument("name", nargs="?", default=None, metavar="NAME",
                       help="a registered set (seglib data list; default: the workbook's own set, human-seg)")
    check.add_argument("--data-dir", type=Path, help="the built-in set's folder (default: the fetched copy)")
    check.set_defaults(func=cmd_data_check)
    split = data_sub.add_parser("split", help="write the seeded, stratified train/val/test split",
                                description="Assign every checked pair to train, val or test (stratified, seeded) "
                                            "and write train.csv, val.csv, test.csv and folds.csv to data/splits "
                                            "(or --out). The same seed on the same data gives the same split; a "
                                            "different split already in the folder is only replaced with "
                                            "--overwrite.")
    split.add_argument("name", nargs="?", default=None, metavar="NAME",
                       help="a registered set, split into data/splits/NAME/ (default: the workbook's own set, into "
                            "data/splits)")
    split.add_argument("--data-dir", type=Path,
                       help="the built-in set's folder to split (default: $SEGLIB_DATA_DIR, else the fetched copy in "
                            "data/raw)")
    split.add_argument("--seed", type=int, default=42,
                       help="seed of the assignment, a whole number 0 or more (default 42: the committed split)")
    split.add_argument("--folds", type=int, default=5,
                       help="cross-validation folds over train+val (0: none, else 2 or more; default: %(default)s)")
    split.add_argument("--out", type=Path, help="folder for the CSVs (default: data/splits, or data/splits/NAME); "
                                                "never the data set's own folder or the folder it is read from")
    split.add_argument("--overwrite", action="store_true",
                       help="replace a different split already in the folder (runs trained on it become unscorable)")
    split.set_defaults(func=cmd_data_split)
    _add_registry_parsers(data_sub)


def _add_registry_parsers(data_sub) -> None:
    from seglib.infra.paths import ENV_DATASETS_DIR

    add = data_sub.add_parser("add", help="register a data set of your own (photos and masks, a pairs CSV or COCO "
                                          "JSON)",
                              description="Read every pair of a new set by its mask rule and register it as "
                                          f"data/datasets/NAME.yaml (${ENV_DATASETS_DIR} moves that folder). Any "
                                          "problem (a missing or unreadable mask, a mask that is not a rescale of "
                                          "its photo, colour masks without a rule, a rule that leaves every mask "
                                          "empty, two photos with one stem, images that are their own masks, a "
                                          "name already registered) is one line naming the file, and nothing is "
                                          "registered. Then: seglib data check NAME; seglib data split NAME; "
                                          "seglib train --set data=NAME.")
    add.add_argument("name", metavar="NAME", help="the new set's name: lower-case letters, digits, '-' and '_'")
    add.add_argument("--images", type=Path, help="the photo folder (with --masks, --coco or --labelstudio)")
    add.add_argument("--masks", type=Path, help="the mask folder: one lossless mask per photo, <photo stem>"
                                                "<--mask-suffix>.png (or .tif, .tiff, .bmp, .gif)")
    add.add_argument("--mask-suffix", default="", help="what follows the photo's stem in a mask's name (default: "
                                                       "none, e.g. _mask for photo.jpg -> photo_mask.png)")
    add.add_argument("--pairs", type=Path, help="a CSV with image and mask columns (paths relative to the CSV), and "
                                                "optionally id")
    add.add_argument("--coco", type=Path, help="a COCO JSON (CVAT, Label Studio, Roboflow exports): its person "
                                               "polygons and RLE are rasterised into data/derived/NAME/")
    add.add_argument("--labelstudio", type=Path, metavar="FILE",
                     help="a Label Studio JSON export: the person brush and polygon regions of each labelled task "
                          "are rasterised into data/derived/NAME/ (tasks not labelled yet are left out)")
    add.add_argument("--mask-rule", default=None,
                     help="how stored mask values mean person (default: binary): binary, nonzero, ==V, in:V1,V2, "
                          "rgb:R,G,B or alpha (a cut-out's transparency: person = alpha above 127)")
    add.add_argument("--source", default="", help="where the set comes from, for its description (default: none)")
    add.add_argument("--licence", default="", help="its licence, for its description (default: none)")
    add.set_defaults(func=cmd_data_add)
    listing = data_sub.add_parser("list", help="the registered data sets",
                                  description="Every registered set: its kind, pairs, mask rule, split and source.")
    listing.set_defaults(func=cmd_data_list)


def cmd_data_fetch(args) -> int:
    from seglib.data.registry import fetch_set

    print(fetch_set(args.name, args.source, args.dest))
    return 0


def cmd_data_add(args) -> int:
    from seglib.data.descriptions import COCO, LABELSTUDIO
    from seglib.data.external import left_out_summary
    from seglib.data.registry import add_dataset
    from seglib.infra.paths import display_path

    files = [(kind, path) for kind, path in ((COCO, args.coco), (LABELSTUDIO, args.labelstudio)) if path is not None]
    if len(files) > 1:
        raise SeglibError("give one source: --coco FILE.json or --labelstudio FILE.json, not both")
    spec, left_out = add_dataset(args.name, images=args.images, masks=args.masks, pairs=args.pairs,
                                 annotations=files[0] if files else None, mask_rule=args.mask_rule,
                                 mask_suffix=args.mask_suffix, about={"source": args.source, "licence": args.licence})
    print("; ".join(part for part in (
        f"registered {spec.name}: {spec.n_pairs} pairs", left_out_summary(left_out),
        f"mask rule {spec.mask_rule} ({display_path(spec.description_file())})",
        f"next: seglib data check {spec.name}, then seglib data split {spec.name}") if part))
    return 0


def cmd_data_list(args) -> int:
    from seglib.data.descriptions import registered
    from seglib.data.registry import as_table
    from seglib.infra.paths import ENV_DATASETS_DIR, missing_env_folder

    missing = missing_env_folder(ENV_DATASETS_DIR)
    if missing:
        print(f"seglib: note: {missing}; only the built-in sets are listed (seglib data add NAME creates it)",
              file=sys.stderr)
    print(as_table(registered()))
    return 0


def cmd_data_check(args) -> int:
    from seglib.data.check import check_dataset
    from seglib.data.descriptions import BUILTIN
    from seglib.data.registry import check_registered

    report = check_dataset(args.data_dir) if args.name in (None, BUILTIN) else check_registered(args.name)
    for line in report.problems:
        print(line, file=sys.stderr)
    if report.problems:
        print(f"{report.dataset_dir}: {len(report.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def cmd_data_split(args) -> int:
    from seglib.data.descriptions import BUILTIN
    from seglib.data.splits import check_seed, make_split, write_split

    check_seed(args.seed)
    builtin = args.name in (None, BUILTIN)
    report, out, inputs = _builtin_split_source(args) if builtin else _registered_split_source(args)
    if builtin:
        table = make_split(report, seed=args.seed, n_folds=args.folds)
    else:  # a set too small to split is named by its description
        from seglib.data.descriptions import get

        spec = get(args.name)  # its own test part, if it has one, and its shares of the other photos
        table = make_split(report, seed=args.seed, n_folds=args.folds, source=spec.description_file(),
                           fractions=spec.split_fractions(), fixed=spec.fixed_splits())
    written = write_split(table, out, overwrite=args.overwrite, inputs=inputs)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("the split files are already this split: nothing changed")
    counts = table["split"].value_counts()
    print(", ".join(f"{name} {counts.get(name, 0)}" for name in ("train", "val", "test")))
    return 0


def _builtin_split_source(args):
    """(the check of the built-in set, the splits folder, what may not be written into), --out refused before
    the data is read."""
    from seglib.data.catalog import find_dataset_dir
    from seglib.data.check import check_dataset
    from seglib.data.splits import refuse_split_folder
    from seglib.infra import paths
    from seglib.infra.io import check_writable_dir

    out = args.out if args.out is not None else paths.splits_dir()
    root = args.data_dir if args.data_dir is not None else paths.raw_data_dir()
    # what the split is made from: writing there would replace or shadow the data set's own train.csv
    inputs = [(find_dataset_dir(args.data_dir), "the data set folder being split"),
              (root, "the data folder it is read from, named by --data-dir or $SEGLIB_DATA_DIR")]
    refuse_split_folder(out, inputs)  # before the data check: a bad --out fails at once
    check_writable_dir(out)
    return check_dataset(args.data_dir), out, inputs


def _registered_split_source(args):
    """The same for a registered set, split into data/splits/NAME/ (its folders are known once it is read)."""
    from seglib.data.descriptions import get
    from seglib.data.registry import check_registered
    from seglib.data.splits import refuse_split_folder
    from seglib.infra.io import check_writable_dir

    if args.data_dir is not None:
        raise SeglibError(f"--data-dir moves the built-in set only; {args.name} is read where its description says")
    spec = get(args.name)
    report = check_registered(args.name)
    out = args.out if args.out is not None else spec.splits_dir()
    inputs = [(report.dataset_dir, f"the folder holding the photos and masks of {spec.name}")]
    refuse_split_folder(out, inputs)
    check_writable_dir(out)
    return report, out, inputs
