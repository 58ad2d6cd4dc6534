"""The `seglib` command line: one parser and one error handler; each command's options live in its own module
here, and the domain modules they call only compute and return values."""

from __future__ import annotations

import argparse
import sys

from seglib import __version__
from seglib.cli import (
    anchor,
    bench,
    crossdata,
    cv,
    data,
    docs,
    edge_head,
    evaluate,
    experiments,
    export,
    generality,
    interpolate,
    label,
    label_curve,
    predict,
    report,
    soup,
    train,
)
from seglib.infra.errors import SeglibError, first_line
from seglib.infra.logs import show_messages
from seglib.infra.signals import exit_code, stop_on_signals

COMMANDS = (data, train, cv, evaluate, crossdata, generality, edge_head, predict, export, interpolate, soup, label,
            report, anchor, bench, experiments, label_curve, docs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seglib", description="Human figure segmentation workbook: data, "
                                     "training, evaluation, prediction, export, reports.")
    parser.add_argument("--version", action="version", version=f"seglib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    if any("\0" in str(arg) for arg in given):  # a shell cannot pass one; Python callers can, and paths reject it
        parser.error("an argument contains a NUL character")
    args = parser.parse_args(argv)
    show_messages()  # what the core logs: progress on stdout, warnings on stderr
    try:
        with stop_on_signals():  # SIGTERM and SIGHUP stop like Ctrl-C: last saved state kept, replaced run restored
            return args.func(args)
    except SeglibError as exc:
        print(f"seglib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"seglib: interrupted ({exc.args[0] if exc.args else 'SIGINT'})", file=sys.stderr)
        return exit_code(exc)
    except MemoryError:
        print("seglib: error: out of memory (try a smaller batch_size or input_size)", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (name too long, permission, disk full): name the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"seglib: error: {where}{exc.strerror or first_line(exc)}", file=sys.stderr)
        return 2
