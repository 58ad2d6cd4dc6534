"""`seglib docs`: regenerate docs/results.md and the README's results table from the committed results."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Register `seglib docs`."""
    p = subparsers.add_parser(
        "docs", help="regenerate docs/results.md and the README's results table from reports/",
        description="Read the committed results (reports/experiments.csv, reports/cv/, reports/reference/metrics/, "
                    "reports/reference-256/metrics/, reports/anchors/, reports/bench/) and rewrite docs/results.md "
                    "and the table between the README's results-table markers; files already current are left "
                    "untouched.")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and name the stale files if either differs (default: off)")
    p.set_defaults(func=cmd_docs)


def cmd_docs(args) -> int:
    from seglib.infra import paths
    from seglib.studies.results_doc import REFRESH, stale_files, write_docs

    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"{paths.display_path(path)}: stale; {REFRESH}")
        if not stale:
            print("docs/results.md and the README's results table are current")
        return 1 if stale else 0
    written = write_docs()
    for path in written:
        print(f"wrote {paths.display_path(path)}")
    if not written:
        print("docs/results.md and the README's results table are already current")
    return 0
