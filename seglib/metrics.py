"""Scores for binary person masks: per image, pooled over images, and a fast torch batch IoU.

Masks are H x W arrays of bool or 0/1 values, compared at the ground truth's resolution
(resize the prediction to the mask, never the mask to the prediction).

Empty-set convention: when a score's denominator is 0 the score is 1.0, the same as
``segmentation_models_pytorch.metrics`` with its default ``zero_division=1``:

- IoU and Dice: both masks empty (nothing to find, nothing predicted) -> 1.0;
- precision: no predicted foreground -> 1.0;
- recall: no true foreground -> 1.0;
- Boundary IoU: both boundary bands empty, i.e. both masks empty -> 1.0.

An empty prediction on a non-empty mask, or a non-empty prediction on an empty mask, scores 0 IoU.
torchmetrics' ``MeanIoU`` differs: it skips images whose union is empty, so its mean is taken
over fewer images and is not comparable with ``mean_iou`` here when the set has empty masks.

Per-image means ("macro", every image counts the same) and pooled scores ("micro": sum tp/fp/fn
over all images, then divide once, so large figures weigh more) answer different questions;
``summarise`` reports both under explicit names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import cv2
import numpy as np
import pandas as pd
import torch

SUMMARY_COLUMNS = ("iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn")


def _as_bool(mask, name: str) -> np.ndarray:
    """Return ``mask`` as a bool array; refuse values other than 0/1 (probabilities, 0/255 masks)."""
    a = np.asarray(mask)
    if a.dtype == bool:
        return a
    if not ((a == 0) | (a == 1)).all():
        raise ValueError(f"{name} must be a binary mask of bool or 0/1 values; binarise it first")
    return a.astype(bool)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_bool(pred, "pred"), _as_bool(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"pred shape {p.shape} differs from target shape {t.shape}; "
            "resize the prediction to the ground truth's resolution first"
        )
    return p, t


def _ratio(num: float, den: float) -> float:
    """``num / den``, or 1.0 when ``den`` is 0 (the empty-set convention)."""
    return 1.0 if den == 0 else float(num) / float(den)


def _iou(tp: int, fp: int, fn: int) -> float:
    return _ratio(tp, tp + fp + fn)


def _dice(tp: int, fp: int, fn: int) -> float:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def confusion(pred, target) -> tuple[int, int, int, int]:
    """Pixel counts (tp, fp, fn, tn) of ``pred`` against ``target``."""
    p, t = _pair(pred, target)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return tp, fp, fn, p.size - tp - fp - fn


def iou(pred, target) -> float:
    tp, fp, fn, _ = confusion(pred, target)
    return _iou(tp, fp, fn)


def dice(pred, target) -> float:
    tp, fp, fn, _ = confusion(pred, target)
    return _dice(tp, fp, fn)


def precision(pred, target) -> float:
    tp, fp, _, _ = confusion(pred, target)
    return _ratio(tp, tp + fp)


def recall(pred, target) -> float:
    tp, _, fn, _ = confusion(pred, target)
    return _ratio(tp, tp + fn)


def boundary_width(shape: tuple[int, ...], dilation_ratio: float = 0.02) -> int:
    """Band width d in pixels: ``max(1, round(dilation_ratio * image diagonal))``."""
    h, w = shape[:2]
    return max(1, int(round(dilation_ratio * np.hypot(h, w))))


def mask_to_boundary(mask, dilation_ratio: float = 0.02) -> np.ndarray:
    """Inner boundary band of a mask: the mask minus its erosion by d iterations of a 3x3 kernel.

    Follows ``mask_to_boundary`` of the official Boundary IoU code (bowenc0221/boundary-iou-api):
    the image is padded with one row/column of background before eroding, so a figure cut off
    by the image frame also has a boundary band along the frame.
    """
    m = _as_bool(mask, "mask")
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H x W), got shape {m.shape}")
    h, w = m.shape
    padded = cv2.copyMakeBorder(m.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((3, 3), dtype=np.uint8)
    eroded = cv2.erode(padded, kernel, iterations=boundary_width(m.shape, dilation_ratio))
    return m & ~eroded[1 : h + 1, 1 : w + 1].astype(bool)


def boundary_iou(pred, target, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU (Cheng et al., CVPR 2021): IoU of the two masks' boundary bands."""
    p, t = _pair(pred, target)
    bp, bt = mask_to_boundary(p, dilation_ratio), mask_to_boundary(t, dilation_ratio)
    return _ratio(np.count_nonzero(bp & bt), np.count_nonzero(bp | bt))


def image_scores(pred, target, dilation_ratio: float = 0.02) -> dict:
    """All per-image scores, plus the counts needed for pooling and the foreground fractions."""
    p, t = _pair(pred, target)
    tp, fp, fn, _ = confusion(p, t)
    return {
        "iou": _iou(tp, fp, fn),
        "dice": _dice(tp, fp, fn),
        "boundary_iou": boundary_iou(p, t, dilation_ratio),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "fg_fraction_true": (tp + fn) / t.size,
        "fg_fraction_pred": (tp + fp) / p.size,
    }


def _summed_counts(rows: pd.DataFrame | Iterable[Mapping]) -> tuple[int, int, int]:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if len(df) == 0:
        raise ValueError("no images to pool")
    missing = [c for c in ("tp", "fp", "fn") if c not in df.columns]
    if missing:
        raise ValueError(f"rows lack the count column(s) {missing}")
    return tuple(int(df[c].sum()) for c in ("tp", "fp", "fn"))


def pooled_iou(rows: pd.DataFrame | Iterable[Mapping]) -> float:
    """Micro IoU: tp/fp/fn summed over all images (rows of ``image_scores``), then one IoU."""
    return _iou(*_summed_counts(rows))


def pooled_dice(rows: pd.DataFrame | Iterable[Mapping]) -> float:
    """Micro Dice: tp/fp/fn summed over all images, then one Dice."""
    return _dice(*_summed_counts(rows))


def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval [low, high] of the mean, resampling the values with replacement."""
    return stratified_bootstrap_ci([values], n_boot=n_boot, seed=seed, level=level)


def stratified_bootstrap_ci(groups, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval [low, high] of the mean over groups of each group's mean (each group weighted
    equally), resampling each group's values apart, with replacement; one group is the plain bootstrap of its mean."""
    groups = [np.asarray(values, dtype=float) for values in groups]
    if not groups or any(v.size == 0 for v in groups) or n_boot < 1:
        raise ValueError("bootstrap needs at least one value per group and n_boot >= 1")
    rng = np.random.default_rng(seed)
    means = np.zeros(n_boot)
    for v in groups:
        chunk = max(1, 1_000_000 // v.size)  # bounds memory at about 1e6 indices per draw
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            means[start:stop] += v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    means /= len(groups)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]


def summarise(per_image: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> dict:
    """Named reductions of a per-image table (one row of ``image_scores`` per image), as plain floats."""
    missing = [c for c in SUMMARY_COLUMNS if c not in per_image.columns]
    if missing:
        raise ValueError(f"per-image table lacks column(s) {missing}")
    if len(per_image) == 0:
        raise ValueError("per-image table is empty")
    ious = per_image["iou"].to_numpy(dtype=float)
    return {
        "n_images": len(per_image),
        "mean_iou": float(ious.mean()),
        "median_iou": float(np.median(ious)),
        "p10_iou": float(np.percentile(ious, 10)),
        "pooled_iou": pooled_iou(per_image),
        "mean_dice": float(per_image["dice"].mean()),
        "pooled_dice": pooled_dice(per_image),
        "mean_boundary_iou": float(per_image["boundary_iou"].mean()),
        "mean_precision": float(per_image["precision"].mean()),
        "mean_recall": float(per_image["recall"].mean()),
        "mean_iou_ci95": bootstrap_ci(ious, n_boot=n_boot, seed=seed),
    }


@torch.no_grad()
def batch_iou_torch(
    logits_or_probs: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    from_logits: bool = True,
) -> torch.Tensor:
    """Per-image IoU, shape (N,), of N x 1 x H x W outputs against 0/1 targets; 1.0 where both are empty.

    The foreground is ``probability >= threshold`` (as in smp's ``get_stats``), with
    ``probability = sigmoid(logits)`` when ``from_logits``.
    """
    if logits_or_probs.shape != target.shape:
        raise ValueError(
            f"output shape {tuple(logits_or_probs.shape)} differs from target shape {tuple(target.shape)}"
        )
    probs = logits_or_probs.sigmoid() if from_logits else logits_or_probs
    pred = (probs >= threshold).flatten(1)
    true = (target > 0.5).flatten(1)
    inter = (pred & true).sum(1)
    union = (pred | true).sum(1)
    scores = inter.float() / union.clamp(min=1).float()
    return torch.where(union == 0, torch.ones_like(scores), scores)
