"""`seglib experiments`: add or update evaluated runs' rows in the experiment log (reports/experiments.csv)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register `seglib experiments`."""
    p = subparsers.add_parser("experiments", help="add or update runs' rows in reports/experiments.csv",
                              description="One row per run: its recipe, training time and the val (and, for chosen "
                                          "recipes, test) scores saved by `seglib evaluate`.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run names (runs/NAME)")
    p.add_argument("--variant", action="append", default=[], metavar="SCORES.json",
                   help="a row for a model that is no run of its own (an interpolated checkpoint, a run with "
                        "prediction-time levers) from the multi_domain_val.json `seglib generality --val` wrote "
                        "(repeatable)")
    p.add_argument("--notes", default="", help="free text for the notes column")
    p.set_defaults(func=cmd_experiments)


def cmd_experiments(args) -> int:
    from seglib.studies.experiments import record, record_variants

    if not args.runs and not args.variant:
        raise SystemExit("seglib experiments: error: give RUN names or --variant SCORES.json")
    table = record(args.runs, args.notes) if args.runs else None
    table = record_variants(args.variant, args.notes) if args.variant else table
    print(table.to_string(index=False))
    return 0
