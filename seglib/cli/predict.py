"""`seglib predict`: a mask (and overlay, cut-out, new background) for each photo and video."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from seglib.cli.options import add_inference_options, inference_from_args, name_default_model
from seglib.infra.devices import DEVICES
from seglib.infra.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from seglib.runs import BEST


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a probability threshold must be between 0 and 1 (exclusive)")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `seglib predict`."""
    p = subparsers.add_parser(
        "predict", help="write a mask (and overlay, cut-out, new background) for each photo and video",
        description="Predict a figure mask for each photo: one <stem>.mask.png (0/255) per input, at the "
                    "input's exact size as viewers show it (EXIF rotation applied); a video gets <stem>.mask.mp4 "
                    "(its own container; WebM stays WebM), frame for frame, masks smoothed over time, audio kept. "
                    "With no model named, the default model (reports/generality/models.yaml's `default:`, the "
                    "multi-domain val rule's choice). "
                    "By default the threshold and flip TTA are those chosen on val for the checkpoint, as its "
                    "reported scores used. Folders are scanned for "
                    f"{'/'.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)} (not recursively). Unreadable files are reported "
                    "and skipped; exit status 0 = all written, 1 = some inputs failed, 2 = usage or setup error.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="photos, videos, or folders of them")
    source = p.add_mutually_exclusive_group()  # none: the default model (reports/generality/models.yaml)
    source.add_argument("--run", metavar="NAME", help=f"use runs/NAME/{BEST} (and its val-chosen threshold)")
    source.add_argument("--checkpoint", type=Path, metavar="PATH", help="use this checkpoint file")
    source.add_argument("--onnx", type=Path, metavar="FILE",
                        help="use a model exported by `seglib export` (runs in ONNX Runtime on the CPU)")
    source.add_argument("--ensemble", metavar="RECIPE",
                        help="average the fold runs of a cross-validated recipe (runs/RECIPE-foldK, last epoch), "
                             "with threshold 0.5 and flip TTA as on the folds unless given")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the masks (created)")
    p.add_argument("--overlay", action="store_true", help="also write <stem>.overlay.jpg (mask tinted on the photo)")
    p.add_argument("--cutout", action="store_true",
                   help="also write <stem>.cutout.png: the figure on a transparent background (RGBA, soft edge); "
                        "a video's cut-out stands on chroma-key green")
    p.add_argument("--background", metavar="SPEC",
                   help="also write <stem>.background.jpg: the figure on a new background: blur, a colour (white, "
                        "#RRGGBB, R,G,B) or an image file (scaled to cover)")
    p.add_argument("--refine", action="store_true",
                   help="fit the figure's edge to the photo's own edges with a guided filter: masks and overlays, "
                        "and the soft edge of cut-outs and backgrounds (default: as chosen on val for this checkpoint, "
                        "else off)")
    add_inference_options(p, chosen="as chosen on val for this checkpoint, else off")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the horizontally flipped prediction (default: as chosen on val for this "
                        "checkpoint, else off)")
    p.add_argument("--threshold", type=_threshold, metavar="FLOAT",
                   help="probability threshold (default: chosen on val for this checkpoint and TTA setting, "
                        "else the checkpoint's)")
    p.add_argument("--no-quality", dest="quality", action="store_false",
                   help="no quality.csv (default: written beside the masks: each photo's predicted IoU, a flag "
                        "'check this mask' and the features they come from; docs/predict.md)")
    p.add_argument("--no-smooth", dest="smooth", action="store_false",
                   help="videos: each frame's mask on its own (default: probabilities averaged over still frames)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files in --out")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (cuda if available), cpu or cuda (default: %(default)s)")
    p.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                   help="auto: ONNX Runtime on the CPU (the checkpoint exported once, kept in $SEGLIB_CACHE_DIR or "
                        "~/.cache/seglib), PyTorch on a GPU; torch or onnx to choose (default: %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=cmd_predict)
    return p


def cmd_predict(args) -> int:
    from seglib.infra.io import check_writable_dir
    from seglib.infra.locks import output_folder, reentrant
    from seglib.predict.files import OutputChoice, refuse_unsafe_out
    from seglib.predict.inputs import collect_inputs
    from seglib.predict.outputs import parse_background

    # 1. the model, the inputs and the outputs asked for; --out checked before any work, and nothing created yet
    name_default_model(args)
    inputs = collect_inputs(args.inputs, warn=lambda msg: print(msg, file=sys.stderr))
    _refuse_input_as_out(inputs, args.out)
    out_dir = check_writable_dir(args.out)  # a bad --out fails in a second, not after the batch
    refuse_unsafe_out(inputs, out_dir)  # never a folder seglib reads data from, nor the photos' own folder
    background = parse_background(args.background) if args.background is not None else None
    choice = OutputChoice(overlay=args.overlay, cutout=args.cutout, background=background, refine=args.refine,
                          smooth=getattr(args, "smooth", True), quality=getattr(args, "quality", True))
    # 2. one writer per --out, from before its existing files are looked at until the command ends
    with reentrant(output_folder(out_dir), str(out_dir)):
        return _predict_into(args, inputs, out_dir, choice)


def _predict_into(args, inputs: list[Path], out_dir: Path, choice) -> int:
    """The batch, with --out held: existing outputs refused (unless --overwrite), the model loaded, every input
    predicted; exit status 0 when all were written, 1 when some failed."""
    from seglib.infra.io import NewFolder
    from seglib.predict.files import plan_outputs, predict_files, refuse_existing
    from seglib.predict.quality import estimator_for, refuse_foreign_table

    if not args.overwrite:
        refuse_existing(plan_outputs(inputs, out_dir, choice))
    if choice.quality:
        refuse_foreign_table(out_dir, args.overwrite)
    videos = sum(1 for p in inputs if p.suffix.lower() in VIDEO_SUFFIXES)
    among = f" ({videos} video{'s' if videos != 1 else ''})" if videos else ""
    print(f"predict: {len(inputs)} input{'s' if len(inputs) != 1 else ''}{among} -> {out_dir}; loading "
          f"{args.run or args.checkpoint or args.onnx or f'the fold runs of {args.ensemble}'}", flush=True)  # the first line, before torch is imported
    predictor = _load_predictor(args)
    print(f"predicting {len(inputs)} input{'s' if len(inputs) != 1 else ''} with {predictor.describe()}")
    estimator = estimator_for(predictor, _model_file(args)) if choice.quality else None
    with NewFolder(out_dir) as folder:  # --out is created now, and removed again if nothing is written to it
        try:
            report = predict_files(predictor, inputs, out_dir, choice, progress=getattr(args, "progress", True),
                                   overwrite=args.overwrite, estimator=estimator)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM/SIGHUP: say what is there; seglib.cli exits 130/143
            _say_interrupted(exc)
            raise
    if not report.written:
        folder.rollback()
    print(report.summary())
    return 0 if report.ok else 1


def _load_predictor(args):
    """The model named by --run, --checkpoint, --onnx or --ensemble, in the runtime --runtime and --device choose."""
    from seglib.predict.predictor import Predictor
    from seglib.predict.runtimes import load_predictor
    from seglib.runs import Run

    kwargs = {"threshold": args.threshold, "tta": args.tta, "inference": inference_from_args(args)}
    if args.threshold is not None:
        kwargs["threshold_source"] = "--threshold"
    if args.onnx is not None:
        if args.device == "cuda":
            from seglib.infra.errors import SeglibError

            raise SeglibError("--onnx runs in ONNX Runtime on the CPU; leave --device at auto or cpu")
        return Predictor.from_onnx(args.onnx, **kwargs)
    def load(checkpoint: Path, **settings):
        return load_predictor(checkpoint, runtime=getattr(args, "runtime", "auto"), device=args.device,
                              note=lambda msg: print(msg, file=sys.stderr), **settings)

    if getattr(args, "ensemble", None) is not None:
        from seglib.studies.fold_ensemble import ensemble_predictor, fold_checkpoints

        fixed = {k: v for k, v in (("threshold", args.threshold), ("tta", args.tta)) if v is not None}
        return ensemble_predictor(fold_checkpoints(args.ensemble), load=lambda path: load(path, threshold=0.5),
                                  **fixed, **{k: v for k, v in kwargs.items() if k not in ("threshold", "tta")})
    return load(Run.resolve(args.run).require("best") if args.run is not None else args.checkpoint, **kwargs)


def _model_file(args) -> Path | None:
    """The file the model came from, beside which its quality estimator lives (none for an ensemble)."""
    from seglib.runs import Run

    if args.onnx is not None:
        return args.onnx
    if getattr(args, "ensemble", None) is not None:
        return None
    return Run.resolve(args.run).require("best") if args.run is not None else args.checkpoint


def _refuse_input_as_out(inputs: list[Path], out: Path) -> None:
    """A SeglibError when --out names one of the inputs (a file is not a folder for outputs; an easy slip)."""
    from seglib.infra.errors import SeglibError

    for path in inputs:
        if path.is_file() and out.exists() and path.resolve() == out.resolve():
            raise SeglibError(f"{out}: --out is the input {path} itself; give a folder for the outputs")


def _say_interrupted(exc: KeyboardInterrupt) -> None:
    """How many masks an interrupted batch wrote, and where (printed before `seglib: interrupted`)."""
    report = getattr(exc, "predict_report", None)
    if report is not None:
        from seglib.infra.signals import Terminated

        name = signal.Signals(exc.signum).name if isinstance(exc, Terminated) else "SIGINT"
        print(f"seglib: {report.interrupted_summary(name)}", file=sys.stderr)
