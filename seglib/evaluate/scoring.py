"""Per-image scores at a threshold, and the threshold sweep on val."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seglib.evaluate.records import PER_IMAGE_COLUMNS
from seglib.image_facts import FACT_COLUMNS
from seglib.infra.errors import SeglibError
from seglib.metrics import image_scores

SWEEP_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.30, 0.70 + 1e-9, 0.05), 2))


SCORED_AT = "mask resolution"


def score_records(records: list[dict], threshold: float) -> pd.DataFrame:
    """per_image table: one row of scores (at mask resolution) and covariates per record."""
    rows = []
    for rec in records:
        mask = rec["mask"].astype(bool)
        scores = image_scores(rec["prob"] >= threshold, mask)
        prob = rec["prob"]
        rows.append({
            "id": rec["id"],
            **{k: scores[k] for k in ("iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn")},
            "fg_fraction": scores["fg_fraction_true"],
            "fg_fraction_pred": scores["fg_fraction_pred"],
            "height": mask.shape[0],
            "width": mask.shape[1],
            **{k: rec[k] for k in ("image_height", "image_width", "resized", "aspect_ratio", *FACT_COLUMNS)},
            "uncertain_fraction": float(((prob > 0.3) & (prob < 0.7)).mean()),
        })
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


def threshold_sweep(records: list[dict], thresholds=SWEEP_THRESHOLDS) -> pd.DataFrame:
    """Mean per-image IoU and pooled IoU of the cached probabilities at each threshold."""
    if not records:
        raise SeglibError("no images to sweep thresholds on")
    rows = []
    for t in thresholds:
        ious, tp_s, fp_s, fn_s = [], 0, 0, 0
        for rec in records:
            pred, true = rec["prob"] >= t, rec["mask"].astype(bool)
            tp = int(np.count_nonzero(pred & true))
            fp = int(np.count_nonzero(pred & ~true))
            fn = int(np.count_nonzero(~pred & true))
            ious.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
            tp_s, fp_s, fn_s = tp_s + tp, fp_s + fp, fn_s + fn
        den = tp_s + fp_s + fn_s
        rows.append({"threshold": float(t), "mean_iou": float(np.mean(ious)),
                     "pooled_iou": 1.0 if den == 0 else tp_s / den})
    return pd.DataFrame(rows, columns=["threshold", "mean_iou", "pooled_iou"])


def choose_threshold(sweep: pd.DataFrame, tol: float = 1e-9) -> float:
    """The threshold with the best mean IoU; ties (within `tol`) go to the one closest to 0.5, then the lower."""
    best = sweep["mean_iou"].max()
    tied = sweep[sweep["mean_iou"] >= best - tol]
    order = sorted(tied["threshold"], key=lambda t: (round(abs(t - 0.5), 9), t))
    return float(order[0])
