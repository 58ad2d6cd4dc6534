"""`seglib evaluate`: score a run or checkpoint on val, test or an external set."""

from __future__ import annotations

from pathlib import Path

from seglib.cli.options import add_data_options
from seglib.infra.errors import SeglibError
from seglib.infra.paths import EVAL_SPLITS
from seglib.runs import BEST


def add_parser(subparsers) -> None:
    """Register `seglib evaluate`."""
    p = subparsers.add_parser(
        "evaluate", help="score a run on val or test at mask resolution, with baselines",
        description=f"Score a run's {BEST} (or a checkpoint) on val or test, or on an external labelled set: "
                    "each photo at its mask's resolution, mean IoU with a 95% bootstrap interval, Dice and "
                    "boundary IoU, beside the all-background and all-foreground baselines. The threshold is "
                    "chosen on val (scoring val first when needed); test is scored once unless --overwrite. "
                    "Results go to runs/NAME/eval/<split>/ or --out (metrics.json, per_image.csv).")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help=f"run name (runs/NAME/{BEST}; results in runs/NAME/eval/<split>/)")
    target.add_argument("--checkpoint", type=Path, help="a checkpoint outside runs/ (needs --out)")
    p.add_argument("--out", type=Path, help="folder for the results (<out>/<split>/); required with --checkpoint")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test", help="val (chooses the threshold) or test (default)")
    scored = p.add_mutually_exclusive_group()
    scored.add_argument("--external", metavar="SET",
                        help="score every photo of an external labelled set instead of a split, with val's "
                             "threshold: a registered set's name (seglib data list), a pairs CSV (image,mask columns) or IMAGES_DIR:MASKS_DIR; "
                             "refused for a registered set any of whose photos trained the model; results in "
                             "<eval>/<set name>/ (default: none)")
    scored.add_argument("--dataset", metavar="NAME",
                        help="score the test split of a registered set (seglib data list), with val's threshold: "
                             "in-domain for a run that trained on NAME, else a cross-data-set score; results in "
                             "<eval>/NAME-test/ (default: none, the run's own --split)")
    p.add_argument("--tta", action="store_true", help="average with a horizontally flipped prediction")
    p.add_argument("--refine", action="store_true",
                   help="refine each mask's edge at the photo's resolution with a guided filter (default: off)")
    p.add_argument("--overwrite", action="store_true", help="score test again although it is already scored")
    p.add_argument("--threshold-from", choices=("val", "checkpoint"), default="val",
                   help="val: sweep on val (default); checkpoint: the training threshold")
    add_data_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from seglib.data.registry import scored_set
    from seglib.evaluate import EvalOptions, evaluate_run, format_table

    if args.checkpoint is not None and args.out is None:
        raise SeglibError("--checkpoint needs --out DIR (where the results go)")
    pairs = scored_set(args.external) if args.external else None
    if args.dataset:
        from seglib.data.selection import split_test_pairs

        pairs = split_test_pairs(args.dataset)
    options = EvalOptions(tta=args.tta, overwrite=args.overwrite, progress=not args.quiet,
                          threshold_source=args.threshold_from, refine=args.refine)
    with _held_out(args, pairs):  # --out: never a data folder; one writer from its existing-file check to the end
        result = evaluate_run(args.run, pairs or args.split, checkpoint=args.checkpoint, out_dir=args.out,
                              dataset_dir=args.data_dir, splits_dir=args.splits_dir, options=options)
    m = result.metrics
    print(f"{m['split']}: {m['n_images']} images scored at {m['scored_at']}, threshold {m['threshold']:.2f} "
          f"({m['threshold_source']}){', TTA' if m['tta'] else ''}{', edges refined' if m['refine'] else ''}")
    print(format_table(result.table()))
    for r in ([result.val_result] if result.val_result else []) + [result]:
        for path in r.paths:
            print(f"wrote {path}")
    return 0


def _held_out(args, pairs):
    """The lock of where the results go: a run's eval folder, or --out once it is known to be none of the folders
    seglib reads data from nor one this evaluation reads (the data set, the splits, an external set's photos and
    masks); a refusal is one line, before any work, and creates nothing."""
    from seglib.data.fence import refuse_data_folders
    from seglib.infra.locks import exclusive, output_folder

    if args.out is None:  # a run's own eval folder: one evaluation of the run writes there at a time
        import contextlib

        from seglib.runs import Run

        run = Run.resolve(args.run)  # a run that is not there is said by the evaluation, with nothing created
        held = exclusive(output_folder(run.eval_root), f"evaluation of run {run.name}")
        return held if run.dir.is_dir() else contextlib.nullcontext()
    reads = [(args.data_dir, "the data set folder evaluate reads"),
             (args.splits_dir, "the splits folder evaluate reads")]
    if pairs is not None:
        folders = {Path(p).parent for column in ("image_path", "mask_path") for p in pairs.items[column]}
        reads += [(folder, f"a folder of the scored set {pairs.name!r}") for folder in sorted(folders)]
    refuse_data_folders(args.out, reads, option="--out")
    return exclusive(output_folder(args.out), str(args.out))
