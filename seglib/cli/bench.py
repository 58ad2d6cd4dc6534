"""`seglib bench`: training and prediction speed, and the shipped model side by side with MediaPipe (make bench)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seglib.runs import BEST


def add_parser(subparsers) -> None:
    """Register `seglib bench`."""
    p = subparsers.add_parser(
        "bench", help="benchmark training and prediction speed, ours vs MediaPipe (make bench)",
        description="Training: each configuration in its own process. Prediction: a checkpoint (default the "
                    "committed reference) in PyTorch and in ONNX Runtime next to MediaPipe off the shelf, on the "
                    "test photos end to end, with mean IoU. Writes reports/bench/bench.json and bench.md (a part "
                    "left out keeps its previous numbers). Run it on an idle machine.")
    p.add_argument("--one", help=argparse.SUPPRESS)  # one configuration, in the worker process
    p.add_argument("--only", choices=("training", "prediction", "folder"),
                   help="measure one part only (folder: `seglib predict` on a folder of photos vs MediaPipe's "
                        "runtime, end to end, idle and with one core busy)")
    p.add_argument("--train-steps", type=int, default=8,
                   help="timed training steps per configuration (default: %(default)s)")
    p.add_argument("--predict-runs", type=int, default=20,
                   help="timed predictions per configuration, training part (default: %(default)s)")
    p.add_argument("--checkpoint", type=Path, help="the model to compare with MediaPipe (default: "
                                                   f"reports/reference/{BEST})")
    p.add_argument("--fast-checkpoint", type=Path, help="a model trained at MediaPipe's input size, timed in ONNX "
                                                        f"Runtime beside it (default: reports/reference-256/{BEST} "
                                                        "where it exists)")
    p.add_argument("--photos", type=int, metavar="N", help="only the first N test photos (a quick check; "
                                                            "default: all 44)")
    p.add_argument("--mediapipe-python", type=Path, help="the mediapipe environment's python (default: "
                                                         "$SEGLIB_MEDIAPIPE_PYTHON or .venv-mediapipe/bin/python)")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("--out", type=Path, help="results folder (default: reports/bench)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from seglib.studies.bench import PARTS, measure, render_markdown, run_all

    if args.one:
        spec = _worker_spec(args.one)
        print(json.dumps(measure(spec["profile"], spec["overrides"], args.train_steps, args.predict_runs,
                                 decode_every_time=spec["decode_every_time"])))
        return 0
    report = run_all(args.train_steps, args.predict_runs, args.out,
                     parts=(args.only,) if args.only else PARTS, checkpoint=args.checkpoint, photos=args.photos,
                     fast_checkpoint=args.fast_checkpoint,
                     mediapipe_python=args.mediapipe_python, dataset_dir=args.data_dir)
    if args.only != "folder":
        print(render_markdown(report))
    return 0


def _worker_spec(text: str) -> dict:
    """The configuration a worker process measures (`--one`, written by the bench itself), or a ConfigError."""
    from seglib.infra.errors import ConfigError

    try:
        spec = json.loads(text)
    except ValueError:
        spec = None
    if not (isinstance(spec, dict) and isinstance(spec.get("profile"), str)
            and isinstance(spec.get("overrides", {}), dict) and isinstance(spec.get("decode_every_time", False), bool)):
        raise ConfigError(f"--one {text[:60]!r}: expected the JSON object the bench passes its workers "
                          '({"profile": NAME, "overrides": {...}, "decode_every_time": BOOL})')
    return {"profile": spec["profile"], "overrides": spec.get("overrides", {}),
            "decode_every_time": spec.get("decode_every_time", False)}
