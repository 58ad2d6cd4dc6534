"""`seglib export`: a trained model as ONNX."""

from __future__ import annotations

from pathlib import Path

from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.runs import BEST


def add_parser(sub) -> None:
    """Register `seglib export`."""
    export = sub.add_parser("export", help="export a trained model to ONNX (checked against PyTorch)",
                            description=f"Write a run's {BEST} (or any checkpoint) as an ONNX model with its threshold, "
                                        "input size and normalisation as metadata; the graph is checked with the onnx "
                                        "checker and its outputs compared with PyTorch's before the file is kept. "
                                        "Predict with it: `seglib predict --onnx FILE ...`.")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help=f"export runs/NAME/{BEST}")
    source.add_argument("--checkpoint", type=Path, help="export this checkpoint file")
    export.add_argument("--out", type=Path, required=True, metavar="FILE.onnx", help="the ONNX file to write")
    export.add_argument("--fixed-size", action="store_true",
                        help="fix the input at the training size (default: any size where the network allows)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing FILE.onnx")
    export.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from seglib.data.fence import refuse_data_folders
    from seglib.export import check_out_path, export_onnx
    from seglib.infra.locks import exclusive
    from seglib.runs import Run

    # 1. --out: an .onnx file that can be written there, in no folder seglib reads data from (beside the
    #    checkpoint is where exports usually go); checked before the checkpoint is read and traced
    if args.out.suffix.lower() != ".onnx":
        raise SeglibError(f"{args.out}: the output file should end in .onnx")
    check_out_path(args.out, args.overwrite, hint="pass --overwrite")
    refuse_data_folders(args.out, option="--out")
    # 2. one writer per file: the existing-file check made again under its lock, held until it is written
    with exclusive(args.out.resolve(), str(args.out)):
        check_out_path(args.out, args.overwrite, hint="pass --overwrite")
        checkpoint = Run.named(args.run).require("best") if args.run is not None else args.checkpoint
        result = export_onnx(checkpoint, args.out, dynamic=not args.fixed_size, overwrite=args.overwrite)
    size = "any input size (multiples of the network's stride)" if result.dynamic_hw else \
        f"{result.input_size}x{result.input_size} input only{f' ({result.note})' if result.note else ''}"
    print(f"wrote {display_path(result.path)}: {size}; largest difference to PyTorch {result.max_abs_diff:.2g} "
          f"(tolerance {result.tolerance:.2g})")
    return 0


