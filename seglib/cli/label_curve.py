"""`seglib label-curve`: the learning curve of photos chosen by the ranking against photos chosen at random."""

from __future__ import annotations

from pathlib import Path

from seglib.cli.cv import parse_folds
from seglib.cli.options import PROFILE_HELP, add_data_options, add_settings_options


def add_parser(sub) -> None:
    """Register `seglib label-curve`."""
    p = sub.add_parser(
        "label-curve", help="simulate labelling: photos the ranking suggests against random photos (a learning curve)",
        description="On train+val less a held-out fold of folds.csv: label --start photos drawn at random, then "
                    "--step more at a time, chosen by `seglib label suggest`'s ranking or at random; train the short "
                    "recipe each time and score it on the held-out fold (flip TTA, threshold 0.5), over --repeats "
                    "repeats. Each result is saved as it finishes: run the same command again to continue. Writes "
                    "reports/label_curve/curve.csv and curve.png. Test is never touched.")
    p.add_argument("--profile", default="cpu", help=f"{PROFILE_HELP}; default cpu (MediaPipe's selfie segmenter "
                   "fine-tuned), at the small input and few epochs of CURVE_RECIPE in seglib/studies/label_curve.py "
                   "(change them with --set)")
    add_settings_options(p)
    p.add_argument("--start", type=int, default=20, help="photos labelled first, drawn at random (default 20)")
    p.add_argument("--step", type=int, default=20, help="photos added at each step (default 20)")
    p.add_argument("--steps", type=int, default=5, help="labelled sizes simulated, the first included (default 5)")
    p.add_argument("--repeats", type=int, default=5,
                   help="repeats; repeat R holds out fold R modulo the number of folds (default 5)")
    p.add_argument("--folds", help="comma-separated held-out folds the repeats cycle through (default: every fold)")
    p.add_argument("--diversity", type=float, default=0.5, help="the ranking's diversity, 0 to 1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.add_argument("--out", type=Path, help="results folder (default reports/label_curve)")
    p.add_argument("--overwrite", action="store_true", help="delete the folder's results and start again")
    p.add_argument("--plot-only", action="store_true", help="train nothing: redraw curve.csv and curve.png from the "
                                                            "results saved so far")
    add_data_options(p)
    p.set_defaults(func=cmd_label_curve)


def cmd_label_curve(args) -> int:
    from seglib.infra.paths import display_path
    from seglib.infra.values import parse_assignments
    from seglib.studies import label_curve

    folder = args.out if args.out is not None else label_curve.curve_dir()
    if args.out is not None:
        from seglib.data.fence import refuse_data_folders

        refuse_data_folders(args.out, option="--out")  # never into a folder seglib reads data from
    if args.plot_only:
        table = label_curve.write_curve(folder)
    else:
        plan = label_curve.CurvePlan(start=args.start, step=args.step, steps=args.steps, repeats=args.repeats,
                                     folds=tuple(parse_folds(args.folds)) if args.folds is not None else (),
                                     diversity=args.diversity, seed=args.seed)
        cfg = label_curve.curve_config(args.profile, parse_assignments(args.set, "--set"))
        table = label_curve.simulate(cfg, plan, out_dir=folder, overwrite=args.overwrite, dataset_dir=args.data_dir,
                                     splits_dir=args.splits_dir)
    print(label_curve.describe_curve(table))
    print(f"wrote {display_path(Path(folder) / label_curve.CURVE_CSV)}")
    return 0
