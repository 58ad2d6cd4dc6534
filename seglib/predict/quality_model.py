"""The quality estimator: a ridge regression from a mask's features (`quality_features`) to its IoU, fitted on val.

`fit_quality_model(features, iou)` regresses log(1 - IoU) on the transformed features (`TRANSFORMS`), standardised,
with the ridge penalty of least leave-one-out error (`PENALTIES`), and reads it back as an IoU in [0, 1]. Its flag
cut is the leave-one-out predicted IoU that best separates the worst tenth of the photos it was fitted on (by
actual IoU) from the rest: the largest share of that tenth caught minus the share of the others flagged (Youden's
J), so that one badly predicted photo among the worst cannot make it flag nearly every mask (as the highest
prediction among the worst tenth did on a val split of several sets). A `QualityEstimator` holds one model for masks
predicted with flip TTA (it also reads the flip agreement) and one for masks without, with what they were fitted
for; it is stored as JSON beside its model file (`sidecar_path`). NumPy only (SciPy for the rank correlation).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.infra.errors import SeglibError
from seglib.infra.io import write_json_atomic
from seglib.infra.paths import display_path
from seglib.predict.quality_features import (
    EDGE_UNCERTAINTY,
    FEATURES,
    FIGURE_SHARE,
    FLIP_IOU,
    FRAGMENTS,
    INSIDE_CONFIDENCE,
    LARGEST_SHARE,
    SELF_IOU,
    UNCERTAIN_SHARE,
    UNCERTAIN_TO_FIGURE,
)

SIDECAR_SUFFIX = ".quality.json"
SIDECAR_FORMAT = 1
TTA_MODEL, PLAIN_MODEL = "tta", "plain"  # the estimator's two models: masks with and without flip TTA
PREDICTED_IOU, CHECK = "predicted_iou", "check"
WORST_SHARE = 0.1  # the flag is set to catch the worst tenth of the photos fitted on
MIN_VAL_PHOTOS = 10  # fewer photos than this fit no estimator
PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # ridge penalties tried (per photo, on standardised features)
ERROR_FLOOR = 1e-3  # 1 - IoU below this counts as this (the log of the error stays finite)

# how each feature enters the regression: the log of its error (a confidence or agreement near 1), its log
# (a share near 0), or log(1 + x) (a count)
LOG_ERROR, LOG, LOG1P = "log(1-x)", "log(x)", "log(1+x)"
TRANSFORMS = {SELF_IOU: LOG_ERROR, FLIP_IOU: LOG_ERROR, INSIDE_CONFIDENCE: LOG_ERROR, LARGEST_SHARE: LOG_ERROR,
              EDGE_UNCERTAINTY: LOG, UNCERTAIN_SHARE: LOG, UNCERTAIN_TO_FIGURE: LOG, FIGURE_SHARE: LOG,
              FRAGMENTS: LOG1P}


def sidecar_path(model_file: str | Path) -> Path:
    """Where a checkpoint's (or an ONNX export's) quality estimator lives: `<stem>.quality.json` beside it."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.stem + SIDECAR_SUFFIX)


def design(table: pd.DataFrame, names) -> np.ndarray:
    """The regression's inputs: each named feature column transformed as `TRANSFORMS` says."""
    columns = []
    for name in names:
        x = table[name].to_numpy(dtype=float)
        kind = TRANSFORMS[name]
        if kind == LOG_ERROR:
            columns.append(np.log(np.clip(1.0 - x, 1e-4, 1.0)))
        elif kind == LOG:
            columns.append(np.log(np.clip(x, 1e-4, None)))
        else:
            columns.append(np.log1p(np.clip(x, 0.0, None)))
    return np.stack(columns, axis=1) if columns else np.zeros((len(table), 0))


def _log_error(iou) -> np.ndarray:
    return np.log(np.clip(1.0 - np.asarray(iou, dtype=float), ERROR_FLOOR, 1.0))


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coefficients, intercept) of a ridge fit on standardised columns (penalty per photo)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column gets a zero coefficient
    z = (x - mean) / scale
    coef = np.linalg.solve(z.T @ z + penalty * len(y) * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return mean, scale, coef, float(y.mean())


def _leave_one_out(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Each photo's prediction (log error) by the ridge fitted on the others."""
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean, scale, coef, intercept = _ridge(x[keep], y[keep], penalty)
        out[i] = ((x[i] - mean) / scale) @ coef + intercept
    return out


def worst_tenth(iou) -> np.ndarray:
    """The positions of the worst tenth by IoU (at least one photo; ties broken by position)."""
    iou = np.asarray(iou, dtype=float)
    return np.argsort(iou, kind="stable")[:max(1, math.ceil(WORST_SHARE * len(iou)))]


def flag_cut(predicted, iou) -> float:
    """The cut on predicted IoU (check = predicted <= cut) with the largest share of the worst tenth by actual IoU
    caught minus the share of the other photos flagged (Youden's J); the lowest such cut on ties."""
    predicted, iou = np.asarray(predicted, dtype=float), np.asarray(iou, dtype=float)
    worst = np.zeros(len(iou), dtype=bool)
    worst[worst_tenth(iou)] = True
    cuts = np.unique(predicted[worst])  # a best cut is always at one of the worst photos' predictions
    caught = (predicted[worst][None, :] <= cuts[:, None]).mean(axis=1)
    others = (predicted[~worst][None, :] <= cuts[:, None]).mean(axis=1) if (~worst).any() else np.zeros(len(cuts))
    return float(cuts[int(np.argmax(caught - others))])


@dataclass(frozen=True)
class QualityModel:
    """One fitted ridge: its features and their transforms, coefficients, flag cut and how it did on val."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    penalty: float
    cut: float  # check = predicted IoU <= cut
    val_photos: int
    val_spearman_loo: float  # rank correlation of leave-one-out predictions with the actual IoU on val
    val_flagged_share: float  # share of val photos the flag marks (leave-one-out predictions)
    transforms: dict = field(default_factory=dict)
    val_tenth_iou: float = float("nan")  # the highest actual IoU among val's worst tenth

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted IoU per row, in [0, 1]; NaN where a feature is missing."""
        z = (design(table, self.features) - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.clip(1.0 - np.exp(z @ np.asarray(self.coef) + self.intercept), 0.0, 1.0)


def fit_quality_model(table: pd.DataFrame, iou, features=FEATURES) -> QualityModel:
    """Fit the ridge on val photos' features (`table`) against their actual IoU; the penalty with the least
    leave-one-out error, the flag cut from the leave-one-out predictions (see the module)."""
    from scipy.stats import spearmanr

    iou = np.asarray(iou, dtype=float)
    if len(iou) < MIN_VAL_PHOTOS:
        raise SeglibError(f"{len(iou)} val photos: a quality estimator needs at least {MIN_VAL_PHOTOS}")
    x, y = design(table, features), _log_error(iou)
    if not np.isfinite(x).all():
        raise SeglibError("the val photos' quality features are not all finite; no estimator fitted")
    errors = {p: float(np.mean((_leave_one_out(x, y, p) - y) ** 2)) for p in PENALTIES}
    penalty = min(PENALTIES, key=lambda p: (errors[p], -p))
    mean, scale, coef, intercept = _ridge(x, y, penalty)
    loo = np.clip(1.0 - np.exp(_leave_one_out(x, y, penalty)), 0.0, 1.0)
    cut = flag_cut(loo, iou)
    rho = spearmanr(loo, iou)[0] if np.ptp(iou) > 0 and np.ptp(loo) > 0 else float("nan")
    return QualityModel(tuple(features), tuple(map(float, mean)), tuple(map(float, scale)), tuple(map(float, coef)),
                        intercept, float(penalty), cut, len(iou), float(rho), float(np.mean(loo <= cut)),
                        {name: TRANSFORMS[name] for name in features}, float(iou[worst_tenth(iou)].max()))


@dataclass(frozen=True)
class QualityEstimator:
    """The two models (`TTA_MODEL`, `PLAIN_MODEL`) and what they were fitted for."""

    models: dict
    facts: dict = field(default_factory=dict)  # model file, its sha256, epoch, threshold, val photos, when

    def model_for(self, tta: bool) -> QualityModel | None:
        return self.models.get(TTA_MODEL if tta else PLAIN_MODEL)

    def score(self, table: pd.DataFrame, tta: bool) -> pd.DataFrame:
        """`table` with predicted_iou and check filled for masks predicted with (or without) flip TTA."""
        table = table.copy()
        model = self.model_for(tta)
        if model is None or table.empty:
            return table
        pred = model.predict(table)
        table[PREDICTED_IOU] = np.round(pred, 4)
        table[CHECK] = pred <= model.cut
        return table

    def to_dict(self) -> dict:
        return {"format": SIDECAR_FORMAT, **self.facts, "models": {k: asdict(m) for k, m in self.models.items()}}

    @classmethod
    def from_dict(cls, data: dict, source: str = "estimator") -> QualityEstimator:
        """From `to_dict`'s form; a SeglibError naming `source` for anything else."""
        try:
            if data.get("format") != SIDECAR_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {SIDECAR_FORMAT}")
            models = {}
            for key, value in data["models"].items():
                model = QualityModel(**{**value, **{k: tuple(value[k]) for k in ("features", "mean", "scale",
                                                                                  "coef")}})
                if not set(model.features) <= set(FEATURES) or not len(model.features) == len(model.coef):
                    raise ValueError(f"model {key!r} names unknown features")
                models[key] = model
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SeglibError(f"{source}: not a seglib quality estimator ({exc})") from None
        return cls(models, {k: v for k, v in data.items() if k not in ("format", "models")})

    def save(self, path: str | Path) -> Path:
        write_json_atomic(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> QualityEstimator:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SeglibError(f"{path}: cannot read a quality estimator ({exc})") from None
        if not isinstance(data, dict):
            raise SeglibError(f"{path}: not a seglib quality estimator")
        return cls.from_dict(data, display_path(path))
