"""Photos with masks: overlays (truth, errors, boundaries) and grids of them (notebooks 01, 03, 04, 05)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from seglib.infra.arrays import as_mask, check_shapes, to_rgb
from seglib.predict import overlay_mask
from seglib.viz.style import (
    FN_COLOR,
    FP_COLOR,
    MAX_SIDE,
    PANEL,
    PRED_COLOR,
    TP_COLOR,
    TRUTH_COLOR,
    new_figure,
    styled,
)


def downscale(image: np.ndarray, max_side: int | None = MAX_SIDE, *, is_mask: bool = False) -> np.ndarray:
    """Shrink so the longest side is at most max_side (area filter for photos, nearest for masks)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if is_mask:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(image.dtype)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _blend(out: np.ndarray, base: np.ndarray, where: np.ndarray, color, alpha: float) -> None:
    if where.any():
        col = np.asarray(color, np.float32)
        out[where] = np.clip(base[where].astype(np.float32) * (1 - alpha) + col * alpha + 0.5, 0, 255).astype(np.uint8)


def overlay(rgb, mask, color=TRUTH_COLOR, alpha: float = 0.45, outline: bool = True,
            thickness: int = 1) -> np.ndarray:
    """The photo with the mask's pixels tinted by `color` (and its inner edge drawn solid); other pixels unchanged.
    Any image and mask `to_rgb` / `as_mask` accept; drawn by `predict.overlay_mask`, the one overlay."""
    image = to_rgb(rgb)
    m = as_mask(mask)
    check_shapes(image, m)
    return overlay_mask(image, m, color=color, alpha=alpha, outline=outline, thickness=thickness)


def on_checkerboard(rgba: np.ndarray, square: int | None = None) -> np.ndarray:
    """An RGBA image (a cut-out) over a light grey checkerboard, as image editors show transparency (RGB)."""
    h, w = rgba.shape[:2]
    square = square or max(4, max(h, w) // 40)
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // square + xx // square) % 2 == 0)[..., None], 235, 200).astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.clip(rgba[..., :3] * alpha + board * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)


def error_overlay(rgb, pred, truth, tp_alpha: float = 0.3, alpha: float = 0.75, threshold: float = 0.5) -> np.ndarray:
    """Prediction errors on the photo: TP lightly tinted green, FP magenta, FN cyan; TN pixels unchanged."""
    image = to_rgb(rgb)
    p, t = as_mask(pred, threshold), as_mask(truth)
    check_shapes(image, p, t)
    out = image.copy()
    _blend(out, image, p & t, TP_COLOR, tp_alpha)
    _blend(out, image, p & ~t, FP_COLOR, alpha)
    _blend(out, image, ~p & t, FN_COLOR, alpha)
    return out


def error_legend_handles() -> list[Patch]:
    """Legend entries for `error_overlay` colours."""
    return [
        Patch(color=np.asarray(TP_COLOR) / 255, alpha=0.5, label="true positive (person, found)"),
        Patch(color=np.asarray(FP_COLOR) / 255, label="false positive (background called person)"),
        Patch(color=np.asarray(FN_COLOR) / 255, label="false negative (person missed)"),
    ]


def add_error_legend(target: Figure | Axes, **kwargs) -> None:
    """Add the error-colour legend below a figure (or inside an axes)."""
    if isinstance(target, Figure):
        kwargs = {"loc": "outside lower center", "ncols": 3, "frameon": False, **kwargs}
    target.legend(handles=error_legend_handles(), **kwargs)


def image_axis(ax, image: np.ndarray, title: str = "") -> None:
    ax.imshow(image, interpolation="antialiased")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def _grid_shape(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _display_pair(image, mask, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    img = to_rgb(image)
    if mask is None:
        return downscale(img, max_side), None
    m = as_mask(mask)
    check_shapes(img, m)
    return downscale(img, max_side), downscale(m, max_side, is_mask=True)


@styled
def sample_grid(images: Sequence, masks: Sequence | None = None, titles: Sequence[str] | None = None,
                ncols: int = 4, *, color=TRUTH_COLOR, alpha: float = 0.45, max_side: int | None = MAX_SIDE,
                suptitle: str = "") -> Figure:
    """Photos in a grid, each with its mask overlaid (a None mask, or masks=None, shows the photo alone)."""
    n = len(images)
    if n == 0:
        raise ValueError("sample_grid: no images")
    masks = list(masks) if masks is not None else [None] * n
    titles = list(titles) if titles is not None else [""] * n
    if len(masks) != n or len(titles) != n:
        raise ValueError(f"sample_grid: {n} images but {len(masks)} masks and {len(titles)} titles")
    nrows, ncols = _grid_shape(n, ncols)
    fig, axes = new_figure(nrows, ncols)
    for ax, image, mask, title in zip(axes.ravel(), images, masks, titles, strict=False):
        img, m = _display_pair(image, mask, max_side)
        image_axis(ax, img if m is None else overlay(img, m, color=color, alpha=alpha), title)
    _hide_unused(axes, n)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


@styled
def prediction_grid(images: Sequence, truths: Sequence, probs_or_preds: Sequence,
                    titles: Sequence[str] | None = None, threshold: float = 0.5, *,
                    max_side: int | None = MAX_SIDE) -> Figure:
    """One row per photo: image | ground truth | prediction | errors (TP/FP/FN), with the IoU per row.

    Predictions may be probabilities (thresholded at `threshold`) or 0/1 masks, at the truth's size.
    """
    from seglib.metrics import iou

    n = len(images)
    if n == 0:
        raise ValueError("prediction_grid: no images")
    if len(truths) != n or len(probs_or_preds) != n:
        raise ValueError(f"prediction_grid: {n} images, {len(truths)} truths, {len(probs_or_preds)} predictions")
    titles = list(titles) if titles is not None else [f"#{i}" for i in range(n)]
    fig, axes = new_figure(n, 4, height=PANEL * n + 0.4)
    for row, (image, truth, pred, title) in enumerate(zip(images, truths, probs_or_preds, titles, strict=False)):
        img = to_rgb(image)
        t, p = as_mask(truth), as_mask(pred, threshold)
        check_shapes(img, t, p)
        score = iou(p, t)
        small, ts, ps = downscale(img, max_side), downscale(t, max_side, is_mask=True), downscale(p, max_side,
                                                                                                 is_mask=True)
        panels = [(small, f"{title}"), (overlay(small, ts, TRUTH_COLOR), "ground truth"),
                  (overlay(small, ps, PRED_COLOR), f"prediction (t={threshold:g})"),
                  (error_overlay(small, ps, ts), f"errors: IoU {score:.3f}")]
        for ax, (panel, name) in zip(axes[row], panels, strict=True):
            image_axis(ax, panel, name)
    add_error_legend(fig)
    return fig


BAND_COLOR = TRUTH_COLOR  # ground-truth boundary band in `boundary_overlay`


CONTOUR_COLOR = PRED_COLOR  # predicted outline


def boundary_overlay(rgb, pred, truth, *, dilation_ratio: float = 0.02, max_side: int | None = MAX_SIDE,
                     alpha: float = 0.55, threshold: float = 0.5) -> np.ndarray:
    """The photo (downscaled) with the ground truth's boundary band tinted green (the band boundary IoU
    scores, `metrics.mask_to_boundary` at full resolution) and the predicted outline drawn in orange."""
    from seglib.metrics import mask_to_boundary

    image = to_rgb(rgb)
    p, t = as_mask(pred, threshold), as_mask(truth)
    check_shapes(image, p, t)
    band = mask_to_boundary(t, dilation_ratio)
    small = downscale(image, max_side)
    band_s = downscale(band, max_side, is_mask=True)
    pred_s = downscale(p, max_side, is_mask=True).astype(np.uint8)
    out = small.copy()
    _blend(out, small, band_s, BAND_COLOR, alpha)
    contours, _ = cv2.findContours(pred_s, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in CONTOUR_COLOR), 1)
    return out


def boundary_legend_handles() -> list:
    """Legend entries for `boundary_overlay`."""
    from matplotlib.lines import Line2D

    return [Patch(color=np.asarray(BAND_COLOR) / 255, alpha=0.55, label="boundaries: ground-truth boundary band"),
            Line2D([], [], color=np.asarray(CONTOUR_COLOR) / 255, lw=2, label="boundaries: predicted outline")]
