"""The `seglib` command line: data fetch/check/split, train, evaluate, predict, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seglib import __version__
from seglib.config import display_path
from seglib.errors import SeglibError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seglib", description=__doc__)
    parser.add_argument("--version", action="version", version=f"seglib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="fetch, check and split the data set")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download (or copy from --source) and verify the data set")
    fetch.add_argument("--source", help="local folder, .zip or URL (default: $SEGLIB_DATASET_SOURCE, else GitHub)")
    fetch.add_argument("--dest", type=Path, help="folder to put the data set in (default: data/raw)")
    fetch.set_defaults(func=cmd_data_fetch)
    check = data_sub.add_parser("check", help="validate every pair and report the data set's quirks")
    check.add_argument("--data-dir", type=Path, help="data set folder (default: the fetched copy)")
    check.set_defaults(func=cmd_data_check)
    split = data_sub.add_parser("split", help="write the seeded, stratified train/val/test split")
    split.add_argument("--data-dir", type=Path)
    split.add_argument("--seed", type=int, default=42)
    split.add_argument("--folds", type=int, default=5, help="cross-validation folds over train+val (0: none, else 2 or more)")
    split.add_argument("--out", type=Path, help="folder for the CSVs (default: data/splits)")
    split.add_argument("--overwrite", action="store_true",
                       help="replace a different split already in the folder (runs trained on it become unscorable)")
    split.set_defaults(func=cmd_data_split)

    train = sub.add_parser("train", help="train a segmentation network (which one: the profile's `model`)",
                           description="Train the profile's network: cpu/gpu fine-tune MediaPipe's selfie segmenter, "
                                       "cpu-scratch trains our U-Net from random weights, smoke a tiny U-Net.")
    train.add_argument("--profile", default=None,
                       help="smoke | cpu | gpu | cpu-scratch | auto (gpu if CUDA, else cpu); default auto "
                            "(with --resume: the run's own profile)")
    train.add_argument("--run", required=True, help="run name: outputs go to runs/NAME/")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue runs/NAME/last.pt")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("--data-dir", type=Path, help="data set folder (default: the fetched copy)")
    train.add_argument("--splits-dir", type=Path, help="folder with train/val/test CSVs (default: data/splits)")
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="export a trained model to ONNX (checked against PyTorch)",
                            description="Write a run's best.pt (or any checkpoint) as an ONNX model with its threshold, "
                                        "input size and normalisation as metadata; the graph is checked with the onnx "
                                        "checker and its outputs compared with PyTorch's before the file is kept. "
                                        "Predict with it: `seglib predict --onnx FILE ...`.")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="export runs/NAME/best.pt")
    source.add_argument("--checkpoint", type=Path, help="export this checkpoint file")
    export.add_argument("--out", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file to write")
    export.add_argument("--fixed-size", action="store_true",
                        help="fix the input at the training size (default: any size where the network allows)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing FILE.onnx")
    export.set_defaults(func=cmd_export)

    from seglib import evaluate, predict, report

    evaluate.add_parser(sub)
    predict.add_parser(sub)
    report.add_parser(sub)
    return parser


def cmd_data_fetch(args) -> int:
    from seglib.data.fetch import fetch_dataset

    result = fetch_dataset(args.source, args.dest)
    print(result.message)
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
    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split
    from seglib.io import check_writable_dir

    if args.out is not None:
        check_writable_dir(args.out)  # before the data check: a bad --out fails at once
    report = check_dataset(args.data_dir)
    table = make_split(report, seed=args.seed, n_folds=args.folds)
    written = write_split(table, args.out, overwrite=args.overwrite)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("the split files are already this split: nothing changed")
    counts = table["split"].value_counts()
    print(", ".join(f"{name} {counts.get(name, 0)}" for name in ("train", "val", "test")))
    return 0


def cmd_train(args) -> int:
    from seglib.engine import load_resume_state, resume_config, train
    from seglib.runs import Run
    from seglib.settings import make_config, parse_set_args

    overrides = parse_set_args(args.set)
    run = Run.named(args.run)
    if args.resume:
        if args.overwrite:
            raise SeglibError("--resume continues a run and --overwrite replaces it: give one of them")
        cfg = resume_config(load_resume_state(run), args.profile, overrides)
    else:
        cfg = make_config(args.profile or "auto", overrides)
    result = train(cfg, run, resume=args.resume, overwrite=args.overwrite, dataset_dir=args.data_dir,
                   splits_dir=args.splits_dir)
    if result.stop_reason == "interrupted":
        return 130
    print(f"best val IoU {result.best_val_iou:.4f} at epoch {result.best_epoch}; {result.epochs_run} epochs in "
          f"{result.train_seconds / 60:.1f} min ({result.images_per_second:.1f} img/s); checkpoints in "
          f"{display_path(run.dir)}")
    return 0


def cmd_export(args) -> int:
    from seglib.export import export_onnx
    from seglib.runs import Run

    if args.out.suffix.lower() != ".onnx":
        raise SeglibError(f"{args.out}: the output file should end in .onnx")
    checkpoint = Run.named(args.run).require("best") if args.run is not None else args.checkpoint
    result = export_onnx(checkpoint, args.out, dynamic=not args.fixed_size, overwrite=args.overwrite)
    size = "any input size (multiples of the network's stride)" if result.dynamic_hw else \
        f"{result.input_size}x{result.input_size} input only{f' ({result.note})' if result.note else ''}"
    print(f"wrote {display_path(result.path)}: {size}; largest difference to PyTorch {result.max_abs_diff:.2g} "
          f"(tolerance {result.tolerance:.2g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SeglibError as exc:
        print(f"seglib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seglib: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("seglib: error: out of memory (try a smaller batch_size or input_size)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
