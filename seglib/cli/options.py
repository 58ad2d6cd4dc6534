"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path

from seglib.profiles import PROFILE_NAMES

PROFILE_HELP = " | ".join(PROFILE_NAMES) + " (auto: gpu if CUDA, else cpu)"


def add_settings_options(p) -> None:
    """`--set KEY=VALUE` (repeatable)."""
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")


def add_data_options(p) -> None:
    """`--data-dir` and `--splits-dir`."""
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("--splits-dir", type=Path, help="folder with the split CSVs and folds.csv (default: data/splits)")


def _scales(text: str) -> tuple[int, ...]:
    import argparse

    from seglib.infra.errors import SeglibError
    from seglib.predict.levers import parse_scales

    try:
        return parse_scales(text)
    except SeglibError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _factor(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text}: a factor must be 0 (off) or more")
    return value


def add_inference_options(p, *, chosen: str) -> None:
    """`--scales`, `--max-upscale` and `--second-look`: the prediction-time levers (`InferenceOptions`); `chosen`
    says what applies when none is given."""
    p.add_argument("--scales", type=_scales, metavar="SIZES",
                   help="average the probabilities predicted at these input sizes, e.g. 256,448 (multiples of the "
                        f"network's stride; default: {chosen})")
    p.add_argument("--max-upscale", type=_factor, metavar="F",
                   help="never magnify a photo's longest side more than F times: a small photo gets a smaller "
                        f"input (0: off; default: {chosen})")
    p.add_argument("--second-look", action="store_true",
                   help="predict again on a crop around each figure the first pass finds, at a higher resolution, "
                        f"and paste it back (default: {chosen})")


def inference_from_args(args):
    """The `InferenceOptions` the lever options (and --refine) give, or None when none of them is given."""
    from seglib.predict.levers import InferenceOptions

    given = {"scales": args.scales, "max_upscale": args.max_upscale, "second_look": args.second_look or None,
             "refine": getattr(args, "refine", False) or None}
    given = {k: v for k, v in given.items() if v is not None}
    return InferenceOptions(**given) if given else None


def name_default_model(args, sources: tuple[str, ...] = ("run", "checkpoint", "onnx", "ensemble")) -> None:
    """With none of `sources` given, `args.checkpoint` becomes the default model's (reports/generality/models.yaml's
    `default:`, the multi-domain val rule's choice), said on stderr; a SeglibError where it is not here."""
    if any(getattr(args, name, None) is not None for name in sources):
        return
    import sys

    from seglib.infra.errors import SeglibError
    from seglib.infra.paths import display_path
    from seglib.studies.candidates import default_candidate, models_file

    options = " or ".join(f"--{name}" for name in sources)
    default = default_candidate() if models_file().is_file() else None
    if default is None or not default.path.is_file():
        where = display_path(default.path) if default is not None else display_path(models_file())
        raise SeglibError(f"no model named and the default model is not here ({where}): name one with {options}")
    print(f"no model named ({options}): the default model {default.name} ({display_path(default.path)})",
          file=sys.stderr)
    args.checkpoint = default.path
