"""`seglib interpolate`: a fine-tuned checkpoint's weights moved back toward its starting weights (WiSE-FT)."""

from __future__ import annotations

from pathlib import Path

from seglib.infra.paths import display_path
from seglib.runs import BEST


def add_parser(sub) -> None:
    """Register `seglib interpolate`."""
    p = sub.add_parser("interpolate", help="interpolate a fine-tuned checkpoint toward its starting weights (WiSE-FT)",
                       description=f"Write a checkpoint whose weights are (1 - ALPHA) x the weights the run started "
                                   f"from (made again from its settings, e.g. MediaPipe's bundled selfie weights) + "
                                   f"ALPHA x the fine-tuned ones of a run's {BEST} or a checkpoint (Wortsman et al., "
                                   "CVPR 2022); tensors without a starting value keep their fine-tuned value. It "
                                   "keeps the source's settings, threshold and record of training photos, and "
                                   "records ALPHA and the source. Score it like any checkpoint: `seglib evaluate "
                                   "--checkpoint FILE --out DIR --split val`.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help=f"interpolate runs/NAME/{BEST}")
    source.add_argument("--checkpoint", type=Path, help="interpolate this checkpoint file")
    p.add_argument("--alpha", type=float, required=True,
                   help="the fine-tuned weights' share, 0 (the starting weights) to 1 (the fine-tuned weights)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pt", help="the checkpoint file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE.pt")
    p.set_defaults(func=cmd_interpolate)


def cmd_interpolate(args) -> int:
    from seglib.data.fence import refuse_data_folders
    from seglib.infra.locks import exclusive
    from seglib.runs import Run
    from seglib.training.interpolate import interpolate_checkpoint

    refuse_data_folders(args.out, option="--out")  # never into a folder seglib reads data from
    checkpoint = Run.named(args.run).require("best") if args.run is not None else args.checkpoint
    with exclusive(args.out.resolve(), str(args.out)):  # one writer per file
        out = interpolate_checkpoint(checkpoint, args.alpha, args.out, overwrite=args.overwrite)
    from seglib.checkpoint import load_checkpoint

    record = load_checkpoint(out)["interpolation"]
    print(f"wrote {display_path(out)}: (1 - {args.alpha:g}) x starting weights + {args.alpha:g} x "
          f"{display_path(checkpoint)} ({record['interpolated_tensors']} tensors interpolated, "
          f"{record['kept_tensors']} without a starting value kept)")
    return 0
