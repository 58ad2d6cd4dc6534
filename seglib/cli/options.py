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
