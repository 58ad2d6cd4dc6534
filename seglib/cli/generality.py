"""`seglib generality`: every candidate model and both MediaPipe anchors on every registered set's test split, and
the multi-domain val score that chooses across domains (`--val`)."""

from __future__ import annotations

from pathlib import Path

from seglib.cli.options import add_inference_options, inference_from_args


def add_parser(subparsers) -> None:
    """Register `seglib generality`."""
    p = subparsers.add_parser(
        "generality", help="the generality table (each model and MediaPipe on each set's test split), or --val",
        description="Score each candidate of reports/generality/models.yaml whose checkpoint is on this machine on "
                    "every registered set's test split (its own val threshold and TTA; saved scores reused), and "
                    "write reports/generality/table.csv and table.md: mean IoU with its 95% CI, boundary IoU, and "
                    "each row minus the best MediaPipe anchor photo by photo (reports/anchors/, `seglib anchor "
                    "--dataset all`), in-domain cells in bold, sets not on this machine 'not fetched'. With --val: "
                    "print instead the multi-domain val score of each RUN, the mean over the registered sets' val "
                    "splits, each set weighted equally (the rule that chooses across domains, docs/recipes.md).")
    p.add_argument("--val", nargs="+", metavar="RUN",
                   help="print the multi-domain val score of these runs (a checkpoint file: FILE.pt or any "
                        "file; runs/NAME; else a candidate of models.yaml; or a saved record FILE.json, such as an "
                        "edge-head variant's, taken as it is), and each after the first minus the first photo by "
                        "photo with its 95%% CI (default: none, the table is written)")
    p.add_argument("--no-tta", action="store_true", help="--val: score without flip TTA (default: with)")
    add_inference_options(p, chosen="--val: off; with any of these the scores go to <eval>/@LEVERS/")
    p.add_argument("--refine", action="store_true", help="--val: refine each mask's edge at the photo's resolution "
                                                         "with a guided filter (default: off)")
    p.add_argument("--models", type=Path, help="the list of candidates (default: reports/generality/models.yaml)")
    p.add_argument("--out", type=Path, help="where the candidates' scores and the table go (default: "
                                            "reports/generality)")
    p.add_argument("--anchors", type=Path, help="MediaPipe's saved scores (default: reports/anchors)")
    p.add_argument("--no-score", action="store_true", help="score nothing; rebuild the table from the saved scores")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generality)


def cmd_generality(args) -> int:
    from seglib.infra.paths import display_path
    from seglib.studies.generality import TABLE_CSV, TABLE_MD, markdown, run_study, set_titles, study_dir

    if args.val:
        return _print_val(args)
    table = run_study(args.models, args.out, args.anchors, score=not args.no_score, progress=not args.quiet)
    print(markdown(table, set_titles(dict.fromkeys(table["set"]))), end="")
    out = args.out if args.out is not None else study_dir()
    print(f"wrote {display_path(out / TABLE_CSV)} and {TABLE_MD}")
    return 0


def _print_val(args) -> int:
    from seglib.infra.errors import CheckpointError, SeglibError
    from seglib.runs import checkpoint_or_run
    from seglib.studies.candidates import read_models
    from seglib.studies.crossval import ADOPT_MARGIN
    from seglib.studies.domains import (
        Scored,
        describe,
        describe_difference,
        multi_domain_val,
        read_val_record,
    )
    from seglib.studies.generality import study_dir

    candidates, results = None, []
    for name in args.val:
        if name.endswith(".json"):  # a record written before (an edge-head variant's): printed and paired as it is
            results.append(read_val_record(Path(name)))
            print(describe(results[-1]))
            continue
        found = checkpoint_or_run(name)
        if isinstance(found, Path):  # a checkpoint file: its scores in <stem>-eval/ beside it
            if not found.is_file():
                raise CheckpointError(f"{name}: checkpoint file not found")
            model = Scored.of_checkpoint(found.stem, found, found.with_name(f"{found.stem}-eval"), tta=not args.no_tta)
        elif found.best.is_file():
            model = Scored.of_run(name, tta=not args.no_tta)
        else:
            candidates = candidates if candidates is not None else {c.name: c for c in read_models(args.models)}
            if name not in candidates:
                raise SeglibError(f"{name}: neither a trained run (runs/{name}) nor a candidate of the models list "
                                  f"({', '.join(candidates)})")
            found = candidates[name]
            model = Scored.of_checkpoint(found.name, found.path, (args.out or study_dir()) / found.name,
                                         tta=not args.no_tta)
        levers = inference_from_args(args)
        model = model.with_levers(levers) if levers is not None else model
        results.append(multi_domain_val(model, progress=not args.quiet))
        print(describe(results[-1]))
    for result in results[1:]:  # each later model against the first, photo by photo
        print(describe_difference(result, results[0], ADOPT_MARGIN))
    return 0
