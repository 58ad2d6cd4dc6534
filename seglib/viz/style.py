"""The figures' shared style, colours and figure factory."""

from __future__ import annotations

import functools
from collections.abc import Callable

import matplotlib
import numpy as np
from matplotlib.figure import Figure

MAX_SIDE = 256  # longest side of photos in figures


DPI = 90


PANEL = 2.2  # inches per image panel


TRUTH_COLOR = (0, 255, 0)


PRED_COLOR = (255, 140, 0)


TP_COLOR = (0, 200, 0)


FP_COLOR = (255, 0, 255)


FN_COLOR = (0, 255, 255)


SPLIT_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


RELATION_COLORS = {"same": "#4C72B0", "scaled": "#DD8452", "mismatch": "#C44E52"}


STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.interpolation": "nearest",
}


def styled(func: Callable) -> Callable:
    """Build the figure under the shared style (rc_context: nothing leaks into the caller's settings)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None, height: float | None = None,
               squeeze: bool = False, **kwargs) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure not managed by pyplot, and its axes (a 2-D array unless squeeze)."""
    fig = Figure(figsize=(width or PANEL * ncols, height or PANEL * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes
