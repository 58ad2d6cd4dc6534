"""`seglib anchor`: MediaPipe's selfie segmenter and Pose's person mask, off the shelf, scored like our models."""

from __future__ import annotations

from pathlib import Path

from seglib.infra.paths import EVAL_SPLITS
from seglib.studies.anchors import MODELS

ALL_SETS = "all"  # --dataset all: every registered set on this machine


def add_parser(subparsers) -> None:
    """Register `seglib anchor`."""
    p = subparsers.add_parser(
        "anchor", help="score MediaPipe (selfie segmentation and Pose's person mask) off the shelf, like our models",
        description="Score MediaPipe's selfie segmenter and MediaPipe Pose's person mask (mediapipe 0.10.21, run in "
                    "its own environment .venv-mediapipe as a worker process) at mask resolution with threshold "
                    "0.5: on the built-in set's val and test splits, on other registered sets' val and test splits "
                    "(--dataset) and on whole external sets (--external). Results in "
                    "reports/anchors/mediapipe-selfie/ and reports/anchors/mediapipe-pose/, one folder per split "
                    "(val, test; NAME-val, NAME-test) or set; metrics.json counts the photos where Pose found no "
                    "person (its mask is all zero there).")
    p.add_argument("--model", action="append", choices=MODELS,
                   help="a MediaPipe model to score (repeatable; default: both)")
    p.add_argument("--split", action="append", choices=EVAL_SPLITS, help="a split to score (repeatable; default: val "
                                                                         "and test)")
    p.add_argument("--dataset", action="append", metavar="NAME",
                   help=f"a registered set whose splits to score (repeatable; '{ALL_SETS}': every registered set on "
                        "this machine, the others named and passed over; default: the built-in set)")
    p.add_argument("--external", metavar="SET", help="score a whole external set (a registered set's name, a pairs "
                                                     "CSV, IMAGES_DIR:MASKS_DIR); alone unless --split or --dataset "
                                                     "is given")
    p.add_argument("--out", type=Path, help="results folder, one sub-folder per model (default: reports/anchors)")
    p.add_argument("--python", type=Path, help="the mediapipe environment's python (default: "
                                               "$SEGLIB_MEDIAPIPE_PYTHON or .venv-mediapipe/bin/python)")
    p.add_argument("--model-selection", type=int, default=0, help="the selfie model: 0 general (default), 1 "
                                                                  "landscape")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("--overwrite", action="store_true", help="score again what is already scored (default: kept, "
                                                            "with a line saying so)")
    p.add_argument("--teacher-masks", type=Path, metavar="DIR",
                   help="instead of scoring: write one model's probabilities of the training photos of each --dataset "
                        "to DIR/<set>/<stem>.npy, a teacher for `seglib train --set teacher_masks=DIR`")
    p.set_defaults(func=cmd_anchor)


def scored_sets(datasets: list[str] | None) -> list[str]:
    """The registered sets --dataset names (`all`: those on this machine; each other one named on a line)."""
    from seglib.data.descriptions import get
    from seglib.studies.domains import set_status

    if not datasets:
        return []
    if ALL_SETS in datasets:
        status = set_status()
        for name, why in status.items():
            if why:
                print(f"{name}: {why} on this machine; passed over")
        return [name for name, why in status.items() if not why]
    return list(dict.fromkeys(get(name).name for name in datasets))


def cmd_anchor(args) -> int:
    from seglib.data.descriptions import BUILTIN
    from seglib.data.registry import scored_set
    from seglib.data.selection import split_test_pairs
    from seglib.evaluate import format_table
    from seglib.runs import METRICS
    from seglib.studies.anchors import ANCHOR_NAMES, NO_POSE, TITLES, default_out_dir, score_anchor

    sets = scored_sets(args.dataset)
    if args.teacher_masks is not None:
        return write_teachers(args, sets or [BUILTIN])
    chosen = tuple(args.split or EVAL_SPLITS)
    pairs = [split_test_pairs(name, split) for name in sets if name != BUILTIN for split in chosen]
    if args.external:
        pairs.append(scored_set(args.external))
    own = (not sets and not args.external) or BUILTIN in sets or (args.external and args.split and not sets)
    splits = chosen if own else ()
    for model in args.model or MODELS:
        out = args.out / ANCHOR_NAMES[model] if args.out is not None else default_out_dir(model)
        kept = [name for name in [*splits, *(p.name for p in pairs)]
                if not args.overwrite and (out / name / METRICS).is_file()]
        for name in kept:
            print(f"{TITLES[model]}, {name}: already scored in {out / name}; kept (--overwrite scores it again)")
        results = score_anchor([s for s in splits if s not in kept], model=model, out_dir=out, python=args.python,
                               model_selection=args.model_selection, dataset_dir=args.data_dir,
                               overwrite=args.overwrite, progress=False, pairs=[p for p in pairs if p.name not in kept])
        for split, result in results.items():
            m = result.metrics
            missed = f"; no person found on {m[NO_POSE]}" if NO_POSE in m else ""
            print(f"{TITLES[model]}, {split}: {m['n_images']} images at mask resolution, threshold "
                  f"{m['threshold']:g}, MediaPipe {m['mediapipe_ms_per_image_median']} ms per image (median){missed}")
            print(format_table(result.table()))
    return 0


def write_teachers(args, sets: list[str]) -> int:
    """`seglib anchor --teacher-masks DIR`: one model's probabilities of the training photos, for distillation."""
    from seglib.studies.anchors import SELFIE, write_teacher_masks

    models = args.model or [SELFIE]
    if len(models) != 1:
        raise SystemExit("seglib anchor: error: --teacher-masks writes one model's masks; give one --model")
    for name, n in write_teacher_masks(models[0], sets, args.teacher_masks, python=args.python).items():
        print(f"{name}: {n} training photos written to {args.teacher_masks / name}")
    return 0
