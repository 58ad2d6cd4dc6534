"""`seglib bench`: training, data pipeline and prediction speed (make bench)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> None:
    """Register `seglib bench`."""
    p = subparsers.add_parser("bench", help="benchmark training, data pipeline and prediction speed (make bench)",
                              description="Measure each configuration in its own process on this machine; writes "
                                          "reports/bench/bench.json and bench.md. Run it on an idle machine.")
    p.add_argument("--one", help=argparse.SUPPRESS)  # one configuration, in the worker process
    p.add_argument("--train-steps", type=int, default=8, help="timed training steps per configuration")
    p.add_argument("--predict-runs", type=int, default=20, help="timed predictions per configuration")
    p.add_argument("--out", type=Path, help="results folder (default: reports/bench)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from seglib.bench import markdown_table, measure, run_all

    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure(spec["profile"], spec["overrides"], args.train_steps, args.predict_runs)))
        return 0
    report = run_all(args.train_steps, args.predict_runs, args.out, log=lambda line: print(line, flush=True))
    print(markdown_table(report))
    return 0
