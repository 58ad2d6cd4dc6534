"""`seglib evaluate`: score a run or checkpoint on val, test or an external set."""

from __future__ import annotations

from pathlib import Path

from seglib.cli.options import add_data_options, add_inference_options
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
                        help="score the test split (or with --split val, the val split) of a registered set (seglib "
                             "data list), with val's threshold: in-domain for a run that trained on NAME, else a "
                             "cross-data-set score; results in <eval>/NAME-test/ (NAME-val/) (default: none, the "
                             "run's own --split)")
    p.add_argument("--tta", action="store_true", help="average with a horizontally flipped prediction")
    p.add_argument("--refine", action="store_true",
                   help="refine each mask's edge at the photo's resolution with a guided filter, a lever like the "
                        "three below (default: off)")
    add_inference_options(p, chosen="off; with any of these or --refine the results go to <eval>/@LEVERS/<split>/")
    p.add_argument("--adopt", action="store_true",
                   help="with --run and --split val: record these levers as the run's choice, so that predict uses "
                        "them and this threshold by default (no levers: forget an earlier choice)")
    p.add_argument("--overwrite", action="store_true",
                   help="score test again although it is already scored; refit the quality estimator beside the "
                        "checkpoint although one fitted for it is there")
    p.add_argument("--threshold-from", choices=("val", "checkpoint"), default="val",
                   help="val: sweep on val (default); checkpoint: the training threshold")
    p.add_argument("--quality", action="store_true",
                   help="instead of scoring: calibrate the checkpoint's quality estimator (the predicted IoU of "
                        "`seglib predict`'s quality.csv, fitted on val) on every registered test split and the "
                        "external-check set; results in reports/quality/<model>/ or --out (default: off)")
    add_data_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from seglib.data.registry import scored_set
    from seglib.evaluate import EvalOptions, evaluate_run, format_table

    if getattr(args, "quality", False):
        return _calibrate(args)
    if args.checkpoint is not None and args.out is None:
        raise SeglibError("--checkpoint needs --out DIR (where the results go)")
    pairs = scored_set(args.external) if args.external else None
    if args.dataset:
        from seglib.data.selection import split_test_pairs

        pairs = split_test_pairs(args.dataset, args.split)
    options = EvalOptions(tta=args.tta, overwrite=args.overwrite, progress=not args.quiet,
                          threshold_source=args.threshold_from, refine=args.refine, scales=args.scales or (),
                          max_upscale=args.max_upscale or 0.0, second_look=args.second_look)
    if args.adopt and (args.run is None or args.split != "val" or pairs is not None):
        raise SeglibError("--adopt records the levers of a run's val evaluation: give --run NAME --split val")
    with _held_out(args, pairs):  # --out: never a data folder; one writer from its existing-file check to the end
        result = evaluate_run(args.run, pairs or args.split, checkpoint=args.checkpoint, out_dir=args.out,
                              dataset_dir=args.data_dir, splits_dir=args.splits_dir, options=options)
    m = result.metrics
    print(f"{m['split']}: {m['n_images']} images scored at {m['scored_at']}, threshold {m['threshold']:.2f} "
          f"({m['threshold_source']}){', TTA' if m['tta'] else ''}{', edges refined' if m['refine'] else ''}"
          f"{', ' + options.inference.levers.describe() if options.inference.levers.active else ''}")
    print(format_table(result.table()))
    for r in ([result.val_result] if result.val_result else []) + [result]:
        for path in r.paths:
            print(f"wrote {path}")
    if pairs is None and (result.split == "val" or result.val_result is not None):
        _refit_quality(args)
    if args.adopt:
        from seglib.predict.val_choice import adopt_inference

        print(f"wrote {adopt_inference(args.run, options.inference)}")
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


def _model_file(args) -> Path:
    from seglib.runs import Run

    return args.checkpoint if args.checkpoint is not None else Run.resolve(args.run).require("best")


def _refit_quality(args) -> None:
    """After val is scored: the quality estimator fitted on val beside the checkpoint (what `seglib predict`'s
    predicted IoU uses) where none is there for this very checkpoint and threshold; such a one is kept unless
    --overwrite (a published checkpoint's sidecar is not rewritten by scoring it elsewhere). One line either way,
    and never a failed evaluation for it."""
    from seglib.infra.paths import display_path
    from seglib.predict.quality import current_sidecar, refit_sidecar
    from seglib.predict.quality_model import sidecar_path

    model_file = _model_file(args)
    kept = None if args.overwrite else current_sidecar(model_file)
    if kept is not None:
        print(f"quality: kept {display_path(kept)} (fitted for this checkpoint at this threshold; "
              "--overwrite refits it on val)")
        return
    try:
        path = refit_sidecar(model_file, device=getattr(args, "device", None) or "auto",
                             dataset_dir=args.data_dir, splits_dir=args.splits_dir)
    except (SeglibError, OSError, ValueError) as exc:
        print(f"quality: {sidecar_path(model_file)} not refitted: {str(exc).splitlines()[0]}")
    else:
        print(f"wrote {path} (the quality estimator, refitted on val)")


def _calibrate(args) -> int:
    """`seglib evaluate --quality`: the quality estimator's calibration on every registered test split."""
    from seglib.infra.paths import display_path
    from seglib.studies.quality_calibration import calibrate, model_name, study_dir

    model_file = _model_file(args)
    out = args.out if args.out is not None else study_dir(model_name(model_file))
    table = calibrate(model_file, out=out, dataset_dir=args.data_dir, splits_dir=args.splits_dir,
                      progress=not args.quiet)
    for row in table.itertuples(index=False):
        print(f"{row.set}: {row.photos} photos, Spearman {row.spearman:.2f}, flag catches {row.catch_rate:.0%} of "
              f"the worst tenth ({row.worst_tenth}) flagging {row.flagged_share:.0%}")
    print(f"wrote {display_path(out)}")
    return 0
