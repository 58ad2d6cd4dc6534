"""`seglib experiments`: add or update evaluated runs' rows in the experiment log (reports/experiments.csv)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register `seglib experiments`."""
    p = subparsers.add_parser("experiments", help="add or update runs' rows in reports/experiments.csv",
                              description="One row per run: its recipe, training time and the val (and, for chosen "
                                          "recipes, test) scores saved by `seglib evaluate`.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names (runs/NAME)")
    p.add_argument("--notes", default="", help="free text for the notes column")
    p.set_defaults(func=cmd_experiments)


def cmd_experiments(args) -> int:
    from seglib.studies.experiments import record

    table = record(args.runs, args.notes)
    print(table.to_string(index=False))
    return 0
