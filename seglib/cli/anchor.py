"""`seglib anchor`: MediaPipe selfie segmentation, off the shelf, scored exactly like our models."""

from __future__ import annotations

from pathlib import Path

from seglib.infra.paths import EVAL_SPLITS


def add_parser(subparsers) -> None:
    """Register `seglib anchor`."""
    p = subparsers.add_parser(
        "anchor", help="score MediaPipe selfie segmentation off the shelf, like our models (make mediapipe-anchor)",
        description="Score MediaPipe's selfie segmenter (mediapipe 0.10.21, run in its own environment "
                    ".venv-mediapipe as a worker process) on val and test at mask resolution with threshold 0.5, "
                    "and optionally on an external set; results in reports/anchors/mediapipe-selfie/<split>/.")
    p.add_argument("--split", action="append", choices=EVAL_SPLITS, help="a split to score (repeatable; default: val and test)")
    p.add_argument("--external", metavar="SET", help="score an external set (a registered set's name, a pairs "
                                                     "CSV, IMAGES_DIR:MASKS_DIR); alone unless --split is given")
    p.add_argument("--out", type=Path, help="results folder (default: reports/anchors/mediapipe-selfie)")
    p.add_argument("--python", type=Path, help="the mediapipe environment's python (default: "
                                               "$SEGLIB_MEDIAPIPE_PYTHON or .venv-mediapipe/bin/python)")
    p.add_argument("--model-selection", type=int, default=0, help="0: general (default), 1: landscape")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("--overwrite", action="store_true", help="score test (or the external set) again")
    p.set_defaults(func=cmd_anchor)


def cmd_anchor(args) -> int:
    from seglib.data.registry import scored_set
    from seglib.evaluate import format_table
    from seglib.studies.anchors import score_anchor

    pairs = scored_set(args.external) if args.external else None
    splits = () if pairs is not None and not args.split else tuple(args.split or EVAL_SPLITS)
    results = score_anchor(splits, out_dir=args.out, python=args.python, model_selection=args.model_selection,
                           dataset_dir=args.data_dir, overwrite=args.overwrite, progress=False, pairs=pairs)
    for split, result in results.items():
        m = result.metrics
        print(f"{split}: {m['n_images']} images at mask resolution, threshold {m['threshold']:g}, MediaPipe "
              f"{m['mediapipe_ms_per_image_median']} ms per image (median)")
        print(format_table(result.table()))
    return 0

