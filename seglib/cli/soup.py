"""`seglib soup`: a uniform model soup, the mean of the weights of several runs of one recipe."""

from __future__ import annotations

from pathlib import Path

from seglib.infra.paths import display_path
from seglib.runs import BEST


def add_parser(sub) -> None:
    """Register `seglib soup`."""
    p = sub.add_parser("soup", help="average the weights of several runs of one recipe (a uniform model soup)",
                       description="Write a checkpoint whose weights are the mean of the weights of several "
                                   "checkpoints (a uniform model soup, Wortsman et al., ICML 2022): runs of one "
                                   "network fine-tuned from the same start on the same training photos, e.g. one "
                                   "recipe with other seeds. It keeps the first's settings, threshold and record of "
                                   "training photos, and records its sources; it predicts at the cost of one model. "
                                   "Score it like any checkpoint: `seglib generality --val FILE.pt`.")
    p.add_argument("checkpoints", nargs="+", metavar="RUN_OR_CHECKPOINT",
                   help=f"a run name (runs/NAME/{BEST}) or a checkpoint file; two or more")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pt", help="the checkpoint file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE.pt")
    p.set_defaults(func=cmd_soup)


def cmd_soup(args) -> int:
    from seglib.data.fence import refuse_data_folders
    from seglib.infra.locks import exclusive
    from seglib.runs import checkpoint_or_run
    from seglib.training.interpolate import average_checkpoints

    refuse_data_folders(args.out, option="--out")  # never into a folder seglib reads data from
    named = [checkpoint_or_run(c) for c in args.checkpoints]
    sources = [found if isinstance(found, Path) else found.require("best") for found in named]
    with exclusive(args.out.resolve(), str(args.out)):  # one writer per file
        out = average_checkpoints(sources, args.out, overwrite=args.overwrite)
    print(f"wrote {display_path(out)}: the mean of {len(sources)} checkpoints' weights "
          f"({', '.join(str(display_path(s)) for s in sources)})")
    return 0
