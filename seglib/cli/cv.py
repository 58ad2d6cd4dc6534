"""`seglib cv`: compare a recipe on the folds of train+val (never on test)."""

from __future__ import annotations

from seglib.cli.options import PROFILE_HELP, add_data_options, add_settings_options
from seglib.infra.errors import SeglibError


def add_parser(sub) -> None:
    """Register `seglib cv`."""
    p = sub.add_parser("cv", help="cross-validate a recipe on the folds of train+val (data/splits/folds.csv)",
                       description="Train the recipe once per fold (runs/RECIPE-foldK), score each fold's last epoch "
                                   "on its held-out photos (mask resolution, flip TTA, threshold 0.5), save "
                                   "reports/cv/RECIPE.json and the recipe's row in reports/experiments.csv "
                                   "(mean and sd over folds). Test is never touched.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--recipe", help="recipe name: runs/RECIPE-foldK, reports/cv/RECIPE.json")
    what.add_argument("--compare", nargs=2, metavar=("BASELINE", "RECIPE"),
                      help="train nothing: print RECIPE minus BASELINE fold by fold from their saved results, and "
                           "whether the adoption rule (docs/recipes.md) adopts it (more than +0.005 on the same kind of device)")
    what.add_argument("--check", nargs=2, metavar=("SET", "RECIPE"),
                      help="train nothing: score each finished fold run of RECIPE on the external set SET (a "
                           "registered set, a pairs CSV or IMAGES_DIR:MASKS_DIR; flip TTA, threshold 0.5) into "
                           "reports/cv/SET-check-RECIPE.csv, after the decision: it chooses nothing; RECIPE-ensemble "
                           "scores the nested estimate's inner runs, averaged per fold and alone")
    what.add_argument("--ensemble", metavar="RECIPE",
                      help="estimate the fold ensemble of RECIPE (its fold runs averaged, `seglib predict --ensemble`) "
                           "by nested cross-validation with RECIPE's settings: per fold K, runs/RECIPE-foldK-innerJ "
                           "train on train+val less folds K and J and their average is scored on K; saves "
                           "reports/cv/RECIPE-ensemble.json (compare it with --compare RECIPE RECIPE-ensemble)")
    p.add_argument("--profile", default="auto", help=f"{PROFILE_HELP}; default auto")
    add_settings_options(p)
    p.add_argument("--folds", help="comma-separated fold numbers (default: every fold of folds.csv)")
    p.add_argument("--overwrite", action="store_true", help="retrain fold runs that already finished")
    p.add_argument("--refine", action="store_true",
                   help="score the recipe's fold runs with boundary refinement (a guided filter fits each mask's edge "
                        "to the photo); the result is the recipe RECIPE-refined (default: off)")
    p.add_argument("--notes", default="", help="free text for the experiment log's notes column")
    add_data_options(p)
    p.set_defaults(func=cmd_cv)


def cmd_cv(args) -> int:
    from seglib.infra.values import parse_assignments
    from seglib.profiles import make_config
    from seglib.studies.crossval import cross_validate, fold_count, result_lock, result_name
    from seglib.studies.experiments import record_cv

    if args.compare:
        from seglib.studies.crossval import compare, describe_comparison

        print(describe_comparison(compare(*args.compare)))
        return 0
    if args.check:
        from seglib.data.registry import scored_set
        from seglib.infra.paths import display_path
        from seglib.studies import crossval, fold_ensemble

        pairs, name = scored_set(args.check[0]), args.check[1]
        if name.endswith(fold_ensemble.ENSEMBLE):  # the nested estimate's inner runs, averaged per fold and alone
            path = fold_ensemble.external_check(name[:-len(fold_ensemble.ENSEMBLE)], pairs, splits_dir=args.splits_dir)
        else:
            path = crossval.external_check(name, pairs, splits_dir=args.splits_dir)
        print(f"wrote {display_path(path)}")
        return 0
    folds = parse_folds(args.folds) if args.folds is not None else None
    if args.ensemble:
        from seglib.studies.fold_ensemble import ENSEMBLE, nested_estimate

        if args.set or args.profile != "auto" or args.refine:
            raise SeglibError(f"--ensemble {args.ensemble}: the inner runs train with the recipe's own settings "
                              f"(reports/cv/{args.ensemble}.json) and are scored as its fold runs were; leave out "
                              "--profile, --set and --refine")
        name = f"{args.ensemble}{ENSEMBLE}"
        with result_lock(name):
            result = nested_estimate(args.ensemble, folds=folds, overwrite=args.overwrite, dataset_dir=args.data_dir,
                                     splits_dir=args.splits_dir)
            record_cv([name], args.notes)
        print(f"{name}: mean IoU {result['mean_iou']:.4f} ± {result['sd_iou']:.4f} (sd over "
              f"{fold_count(len(result['folds']))}; its members alone {result['member_mean_iou']:.4f}), boundary IoU "
              f"{result['boundary_iou']:.4f}, {result['prediction_cost']:.1f}x a single model's prediction time")
        return 0
    cfg = make_config(args.profile, parse_assignments(args.set))
    name = result_name(args.recipe, args.refine)
    with result_lock(name):  # the result and its experiment-log row are written by one cv at a time
        result = cross_validate(cfg, args.recipe, folds=folds, overwrite=args.overwrite, dataset_dir=args.data_dir,
                                splits_dir=args.splits_dir, refine=args.refine)
        record_cv([name], args.notes)
    print(f"{name}: mean IoU {result['mean_iou']:.4f} ± {result['sd_iou']:.4f} (sd over "
          f"{fold_count(len(result['folds']))}), boundary IoU {result['boundary_iou']:.4f}")
    return 0


def parse_folds(text: str) -> list[int]:
    """--folds 0,2: fold numbers, each once; '' is an error, not every fold (leave --folds out for those)."""
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        raise SeglibError(f"--folds {text!r}: expected comma-separated fold numbers, e.g. 0,1,2 (leave --folds out "
                          "for every fold)") from None
    repeated = sorted({f for f in folds if folds.count(f) > 1})
    if repeated:
        raise SeglibError(f"--folds {text!r}: fold {repeated[0]} given twice; give each fold once (the mean counts "
                          "each fold once)")
    if any(f < 0 for f in folds):
        raise SeglibError(f"--folds {text!r}: fold numbers start at 0")
    return folds
