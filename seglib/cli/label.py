"""`seglib label export | suggest`: pre-labels for an annotation tool, and which photos to label next."""

from __future__ import annotations

import sys
from pathlib import Path

from seglib.cli.options import name_default_model
from seglib.infra.devices import DEVICES
from seglib.runs import BEST


def add_parser(sub) -> None:
    """Register `seglib label`."""
    label = sub.add_parser("label", help="pre-labels for CVAT or Label Studio, and which photos to label next")
    label_sub = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")
    export = label_sub.add_parser(
        "export", help="predict a folder of photos and write the masks as pre-labels for an annotation tool",
        description="Predict every photo of FOLDER and write its mask as a pre-label, the photos in the order to "
                    "label them (`seglib label suggest`'s ranking): --to coco writes DIR/coco.json (category person, "
                    "masks as compressed RLE or polygons; CVAT imports it as COCO 1.0, `seglib data add --coco` "
                    "reads it); --to labelstudio writes DIR/tasks.json (tasks with brush predictions) and "
                    "DIR/labeling_config.xml (the project's labelling interface). A Label Studio export of the "
                    "corrected masks comes back with `seglib data add NAME --labelstudio FILE --images FOLDER`. "
                    "Unreadable photos are reported and skipped; exit status 0 = all exported, 1 = some photos "
                    "failed, 2 = usage or setup error (nothing written). See docs/labelling.md.")
    _add_model_options(export)
    export.add_argument("--to", required=True, metavar="FORMAT", help="the tool's format: coco or labelstudio")
    export.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the export (created; refused when it holds files, unless --overwrite)")
    export.add_argument("--encoding", metavar="ENCODING",
                        help="coco: masks as compressed RLE (rle: exact; the default) or outlines (polygons: holes "
                             "lost)")
    export.add_argument("--image-url", metavar="PREFIX",
                        help="labelstudio: what comes before each photo's name in its task's URL (default: "
                             "/data/local-files/?d=FOLDERNAME/, Label Studio's local files with FOLDER's parent as "
                             "its document root; or e.g. http://127.0.0.1:8000/ for a web server over FOLDER)")
    export.add_argument("--overwrite", action="store_true", help="replace the export's files in --out")
    export.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    export.set_defaults(func=cmd_label_export)
    suggest = label_sub.add_parser(
        "suggest", help="rank a folder's unlabelled photos by what labelling each would teach the model",
        description="Rank the photos of FOLDER by expected gain: where the model probably fails (its predicted "
                    "IoU, else its own doubt), near-identical photos held back so that a burst of one scene is "
                    "not all picked. Prints the ranking; --out writes it as CSV.")
    _add_model_options(suggest)
    suggest.add_argument("--top", type=int, metavar="N", help="the N photos to label first (default: all)")
    suggest.add_argument("--diversity", type=float, default=0.5,
                         help="0 (the model's doubt alone) to 1 (similar photos strongly held back) (default: "
                              "%(default)s)")
    suggest.add_argument("--out", type=Path, metavar="FILE.csv", help="also write the ranking to this CSV")
    suggest.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    suggest.set_defaults(func=cmd_label_suggest)


def _add_model_options(p) -> None:
    p.add_argument("folder", type=Path, metavar="FOLDER", help="the folder of photos (not searched recursively)")
    source = p.add_mutually_exclusive_group()  # none: the default model (reports/generality/models.yaml)
    source.add_argument("--run", metavar="NAME", help=f"use runs/NAME/{BEST} (and its val-chosen threshold)")
    source.add_argument("--checkpoint", type=Path, metavar="PATH",
                        help="use this checkpoint file (neither: the default model, reports/generality/models.yaml)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto (cuda if available), cpu or cuda (default: %(default)s)")


def _model_file(args):
    """The checkpoint file of --run or --checkpoint."""
    from seglib.runs import Run

    return Run.named(args.run).require("best") if args.run is not None else args.checkpoint


def _predictor(args):
    """The model of --run or --checkpoint, with its val-chosen threshold and TTA."""
    from seglib.predict.predictor import Predictor

    if args.run is not None:
        return Predictor.from_run(args.run, device=args.device)
    return Predictor.from_checkpoint(args.checkpoint, device=args.device)


def cmd_label_export(args) -> int:
    from seglib.label.prelabels import (
        ExportOptions,
        check_export_folder,
        export_prelabels,
        photos_of,
        refuse_files,
    )

    given = {"encoding": args.encoding} if args.encoding is not None else {}
    options = ExportOptions(to=args.to, image_url=args.image_url, overwrite=args.overwrite, progress=args.progress,
                            **given)
    options.check()
    name_default_model(args, ("run", "checkpoint"))
    # what can be refused is refused before the model is loaded (it is checked again under the folder's lock)
    photos, _ = photos_of(args.folder)
    out_dir = check_export_folder(args.out, args.folder)
    if not args.overwrite:
        refuse_files(out_dir)
    print(f"label export: {len(photos)} photo{'s' if len(photos) != 1 else ''} of {args.folder} -> {out_dir} "
          f"({args.to}); loading {args.run or args.checkpoint}", flush=True)
    report = export_prelabels(_predictor(args), args.folder, out_dir, options)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_label_suggest(args) -> int:
    import pandas as pd

    from seglib.infra.errors import SeglibError
    from seglib.infra.io import write_text_atomic
    from seglib.label.prelabels import photos_of
    from seglib.label.suggest import rank_photos

    if args.out is not None:
        from seglib.data.fence import refuse_data_folders

        refuse_data_folders(args.out, option="--out")
        if args.out.exists() and not args.overwrite:
            raise SeglibError(f"{args.out} already exists; refusing to overwrite (pass --overwrite, or choose another "
                              "--out)")
    photos, _ = photos_of(args.folder)
    name_default_model(args, ("run", "checkpoint"))
    # the checkpoint file, not a loaded model: its quality estimate (the predicted IoU) then sets the gain
    model = _model_file(args) if args.device in (None, "auto") else _predictor(args)
    ranked = rank_photos(model, photos, n=args.top, diversity=args.diversity)
    with pd.option_context("display.max_rows", None, "display.width", 160, "display.float_format", "{:.3f}".format):
        print(ranked.to_string(index=False))
    skipped = ranked.attrs.get("skipped", [])
    if skipped:
        print(f"seglib: {len(skipped)} photo{'s' if len(skipped) != 1 else ''} could not be read and "
              f"{'were' if len(skipped) != 1 else 'was'} left out", file=sys.stderr)
    if args.out is not None:
        write_text_atomic(args.out, ranked.to_csv(index=False))
        print(f"wrote {args.out}")
    return 0 if not skipped else 1
