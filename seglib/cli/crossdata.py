"""`seglib crossdata`: gather models' scores on each registered set's test split into the cross-data-set table."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    """Register `seglib crossdata`."""
    p = subparsers.add_parser(
        "crossdata", help="the cross-data-set table: each model on each registered set's test split",
        description="Copy each model's `seglib evaluate --dataset NAME` results (NAME-test under its eval folder) "
                    "into reports/crossdata/, one folder per 'trained on' row, and write table.csv and table.md: "
                    "mean IoU with its 95% CI per test split, in-domain cells in bold, and the model minus "
                    "MediaPipe photo by photo where reports/anchors/ holds MediaPipe's scores of those photos.")
    p.add_argument("--run", action="append", default=[], metavar="RUN",
                   help="a run whose eval/NAME-test results to gather (repeat for each model; default: none)")
    p.add_argument("--eval-dir", action="append", default=[], type=Path, metavar="DIR",
                   help="an evaluation folder of a checkpoint scored with --out DIR (repeat; default: none)")
    p.add_argument("--sets", help="the registered sets whose test splits are the columns (default: the built-in set "
                                  "and the external check set, seglib data list)")
    p.set_defaults(func=cmd_crossdata)


def cmd_crossdata(args) -> int:
    from seglib.data.selection import set_names
    from seglib.infra.errors import SeglibError
    from seglib.runs import Run
    from seglib.studies.crossdata import gather, markdown, study_dir

    sets = set_names(args.sets or default_sets())
    folders = [Run.resolve(name).eval_root for name in args.run] + list(args.eval_dir)
    if not folders:
        raise SeglibError("give the models to gather: --run RUN or --eval-dir DIR, once each")
    table = gather(folders, sets)
    print(markdown(table, sets), end="")
    print(f"wrote {study_dir() / 'table.csv'} and table.md")
    return 0


def default_sets() -> str:
    """The built-in set and the set models are checked on, as --sets names them."""
    from seglib.data.descriptions import BUILTIN, external_check_set

    return f"{BUILTIN},{external_check_set().name}"
