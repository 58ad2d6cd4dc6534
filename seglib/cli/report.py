"""`seglib report`: the numbered notebooks run with papermill and published as HTML."""

from __future__ import annotations

from pathlib import Path

from seglib.cli.options import PROFILE_HELP
from seglib.infra.paths import JUPYTER_KERNEL as DEFAULT_KERNEL


def add_parser(subparsers) -> None:
    """Register `seglib report`."""
    p = subparsers.add_parser(
        "report", help="run the numbered notebooks with papermill and render them to reports/NAME/ as HTML",
        description="Execute notebooks/NN_*.ipynb in order with one profile and run name, write the executed "
                    "notebooks, their HTML and an index.html to reports/NAME/ (or $SEGLIB_REPORTS_DIR/NAME).")
    p.add_argument("--profile", default="default",
                   help=f"{PROFILE_HELP}; default: $SEGLIB_PROFILE when set, else auto (as in the notebooks)")
    p.add_argument("--run", default="default", help="run name: trains/reads runs/NAME, writes reports/NAME "
                                                    "(default: $SEGLIB_RUN when set, else the resolved profile's name)")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a notebook parameter, e.g. -p retrain=true -p 'overrides={epochs: 5}' (repeatable; "
                        "the name must be declared by a notebook and the value match its type)")
    p.add_argument("--with-code", action="store_true", help="keep the code cells in the HTML (hidden by default)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing reports/NAME (only once every notebook has succeeded)")
    p.add_argument("--kernel", default=DEFAULT_KERNEL, help="Jupyter kernel to run the notebooks with "
                                                            f"(default: {DEFAULT_KERNEL}, registered by `make setup`)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from seglib.report import parse_param_args, run_report

    params = parse_param_args(args.param)
    index = run_report(args.profile, args.run, data_dir=args.data_dir, params=params, with_code=args.with_code,
                       overwrite=args.overwrite, kernel=args.kernel)
    print(index)
    return 0
