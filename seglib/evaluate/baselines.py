"""Baselines scored like a model: all-background, all-foreground and the mean-mask prior of the train split."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from seglib.data.snapshot import snapshot_splits
from seglib.evaluate.records import split_items
from seglib.geometry import letterbox_box, unletterbox
from seglib.infra.errors import SeglibError
from seglib.metrics import image_scores, summarise

PRIOR_SIZE = 128


BASELINES = ("all-background", "all-foreground", "mean-mask prior")


BASELINE_KEYS = ("mean_iou", "median_iou", "pooled_iou", "mean_dice", "mean_boundary_iou", "mean_iou_ci95")


_PRIOR_CACHE: dict[tuple, np.ndarray] = {}


def _person_masks(items: pd.DataFrame) -> list[np.ndarray]:
    """The 0/1 person mask of every row, by the row's mask rule where it has one (else binary)."""
    from seglib.data.mask_rules import MaskRule

    rules = items["mask_rule"] if "mask_rule" in items.columns else ["binary"] * len(items)
    return [MaskRule.parse(rule).read(Path(path)) for path, rule in zip(items["mask_path"], rules, strict=True)]


def _letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/1 mask letterboxed into a size x size float square (area filter, zero padding)."""
    h, w = mask.shape
    top, left, nh, nw = letterbox_box(h, w, size)
    out = np.zeros((size, size), dtype=np.float32)
    out[top:top + nh, left:left + nw] = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def mean_mask_prior(dataset_dir=None, splits_dir=None, size: int = PRIOR_SIZE, *, snapshot=None) -> np.ndarray:
    """The TRAIN split's masks letterboxed to size x size, averaged, thresholded at 0.5 (uint8 0/1).

    Never fitted on val or test. `snapshot`: the splits folder as the caller read it (read now when None).
    Cached in memory per (data set, train.csv's content, size).
    """
    snapshot = snapshot if snapshot is not None else snapshot_splits(splits_dir)
    items = split_items("train", dataset_dir, snapshot=snapshot)
    split_file = snapshot.folder / "train.csv"
    key = (str(Path(items["mask_path"].iloc[0]).parent.resolve()) if len(items) else "",
           snapshot.sha1("train.csv"), size)
    if key not in _PRIOR_CACHE:
        if not len(items):
            raise SeglibError(f"{split_file}: train split is empty; the mean-mask prior needs training masks")
        total = np.zeros((size, size), dtype=np.float64)
        for mask in _person_masks(items):
            total += _letterbox_mask(mask, size)
        _PRIOR_CACHE[key] = (total / len(items) >= 0.5).astype(np.uint8)
    return _PRIOR_CACHE[key]


def prior_for(prior: np.ndarray, height: int, width: int) -> np.ndarray:
    """The square prior un-letterboxed to an HxW image (bilinear, then >= 0.5)."""
    return (unletterbox(prior.astype(np.float32), height, width) >= 0.5).astype(np.uint8)


def _baseline_predictions(mask: np.ndarray, prior: np.ndarray) -> dict[str, np.ndarray]:
    h, w = mask.shape
    return {"all-background": np.zeros((h, w), dtype=np.uint8),
            "all-foreground": np.ones((h, w), dtype=np.uint8),
            "mean-mask prior": prior_for(prior, h, w)}


def baseline_summaries(masks: list[np.ndarray], prior: np.ndarray, n_boot: int) -> dict[str, dict]:
    rows: dict[str, list[dict]] = {name: [] for name in BASELINES}
    for mask in masks:
        for name, pred in _baseline_predictions(mask, prior).items():
            rows[name].append(image_scores(pred, mask))
    out = {}
    for name in BASELINES:
        summary = summarise(pd.DataFrame(rows[name]), n_boot=n_boot)
        out[name] = {k: summary[k] for k in BASELINE_KEYS}
    return out


def baseline_scores(split: str, dataset_dir=None, *, splits_dir=None, n_boot: int = 2000) -> dict[str, dict]:
    """all-background, all-foreground and mean-mask prior, scored at mask resolution on `split`.

    name -> {mean_iou, median_iou, pooled_iou, mean_dice, mean_boundary_iou, mean_iou_ci95}.
    """
    snapshot = snapshot_splits(splits_dir)
    items = split_items(split, dataset_dir, snapshot=snapshot)
    masks = _person_masks(items)
    if not masks:
        raise SeglibError(f"split {split!r} has no images")
    return baseline_summaries(masks, mean_mask_prior(dataset_dir, snapshot=snapshot), n_boot)
