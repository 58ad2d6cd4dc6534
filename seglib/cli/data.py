"""`seglib data fetch | fetch-pennfudan | check | split`."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    """Register `seglib data`."""
    data = sub.add_parser("data", help="fetch, check and split the data set")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download (or copy from --source) and verify the data set",
                                description="Get the Human Segmentation data set (download it, or copy a local "
                                            "folder or .zip) into data/raw (or --dest) and verify its content: "
                                            "train.csv by its checksum and every file it lists.")
    fetch.add_argument("--source", help="local folder, .zip or URL (default: $SEGLIB_DATASET_SOURCE, else GitHub)")
    fetch.add_argument("--dest", type=Path, help="folder to put the data set in (default: data/raw)")
    fetch.set_defaults(func=cmd_data_fetch)
    pf = data_sub.add_parser("fetch-pennfudan", help="get the Penn-Fudan pedestrians (external test set, never trained on)",
                             description="Copy or download the Penn-Fudan pedestrian database into "
                                         "data/external/PennFudanPed (checked: 170 image/mask pairs). It is used "
                                         "only to measure how well a model generalises beyond our data set.")
    pf.add_argument("--source", help="folder, .zip or URL (default: $SEGLIB_PENNFUDAN_SOURCE, else the authors' "
                                     "archive)")
    pf.add_argument("--dest", type=Path, help="folder to put PennFudanPed in (default: data/external)")
    pf.set_defaults(func=cmd_data_fetch_pennfudan)
    check = data_sub.add_parser("check", help="validate every pair and report the data set's quirks",
                                description="Read every image/mask pair of the data set and report problems "
                                            "(unreadable files, colour or non-binary masks, a mask that is not a rescale of "
                                            "its photo) and its quirks; "
                                            "exit status 1 when a problem is found. Nothing is written.")
    check.add_argument("--data-dir", type=Path, help="data set folder (default: the fetched copy)")
    check.set_defaults(func=cmd_data_check)
    split = data_sub.add_parser("split", help="write the seeded, stratified train/val/test split",
                                description="Assign every checked pair to train, val or test (stratified, seeded) "
                                            "and write train.csv, val.csv, test.csv and folds.csv to data/splits "
                                            "(or --out). The same seed on the same data gives the same split; a "
                                            "different split already in the folder is only replaced with "
                                            "--overwrite.")
    split.add_argument("--data-dir", type=Path,
                       help="data set folder to split (default: $SEGLIB_DATA_DIR, else the fetched copy in data/raw)")
    split.add_argument("--seed", type=int, default=42,
                       help="seed of the assignment, a whole number 0 or more (default 42: the committed split)")
    split.add_argument("--folds", type=int, default=5,
                       help="cross-validation folds over train+val (0: none, else 2 or more; default: %(default)s)")
    split.add_argument("--out", type=Path, help="folder for the CSVs (default: data/splits); never the data set's "
                                                "own folder or the folder it is read from")
    split.add_argument("--overwrite", action="store_true",
                       help="replace a different split already in the folder (runs trained on it become unscorable)")
    split.set_defaults(func=cmd_data_split)


def cmd_data_fetch(args) -> int:
    from seglib.data.fetch import fetch_dataset

    result = fetch_dataset(args.source, args.dest)
    print(result.message)
    return 0


def cmd_data_fetch_pennfudan(args) -> int:
    from seglib.data.external import fetch_pennfudan

    _, message = fetch_pennfudan(args.source, args.dest)
    print(message)
    return 0


def cmd_data_check(args) -> int:
    from seglib.data.check import check_dataset

    report = check_dataset(args.data_dir)
    for line in report.problems:
        print(line, file=sys.stderr)
    if report.problems:
        print(f"{report.dataset_dir}: {len(report.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def cmd_data_split(args) -> int:
    from seglib import config
    from seglib.data.catalog import find_dataset_dir
    from seglib.data.check import check_dataset
    from seglib.data.splits import check_seed, make_split, refuse_split_folder, write_split
    from seglib.io import check_writable_dir

    check_seed(args.seed)
    out = args.out if args.out is not None else config.splits_dir()
    root = args.data_dir if args.data_dir is not None else config.raw_data_dir()
    # what the split is made from: writing there would replace or shadow the data set's own train.csv
    inputs = [(find_dataset_dir(args.data_dir), "the data set folder being split"),
              (root, "the data folder it is read from, named by --data-dir or $SEGLIB_DATA_DIR")]
    refuse_split_folder(out, inputs)  # before the data check: a bad --out fails at once
    check_writable_dir(out)
    report = check_dataset(args.data_dir)
    table = make_split(report, seed=args.seed, n_folds=args.folds)
    written = write_split(table, out, overwrite=args.overwrite, inputs=inputs)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("the split files are already this split: nothing changed")
    counts = table["split"].value_counts()
    print(", ".join(f"{name} {counts.get(name, 0)}" for name in ("train", "val", "test")))
    return 0
