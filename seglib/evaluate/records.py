"""The model run once over a split (or an external set): probabilities and masks at mask resolution, with
each photo's covariates."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from seglib.data.dataset import SegmentationDataset, load_item
from seglib.data.descriptions import BUILTIN
from seglib.data.external import PairSet
from seglib.data.selection import open_sets
from seglib.image_facts import FACT_COLUMNS, image_facts
from seglib.infra.errors import SeglibError
from seglib.infra.paths import EVAL_SPLITS

SPLITS = EVAL_SPLITS


PER_IMAGE_COLUMNS = ["id", "iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn", "fg_fraction",
                     "fg_fraction_pred", "height", "width", "image_height", "image_width", "resized",
                     "aspect_ratio", *FACT_COLUMNS, "uncertain_fraction"]


class ProbabilityModel(Protocol):
    """What evaluation needs from a model (our `Predictor`, the MediaPipe anchor, test doubles): person
    probabilities at each photo's own size, its TTA setting and threshold, and `facts()` about it."""

    threshold: float
    tta: bool
    source: str

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]: ...

    def facts(self) -> dict:
        """epoch, val_iou, weights, profile, model, input_size, threshold (its own), data_split (or None)."""
        ...


def split_items(split: str, dataset_dir=None, splits_dir=None, *, snapshot=None, data: str | None = None
                ) -> pd.DataFrame:
    """id, image_path, mask_path (and mask_rule) of every pair in a split (nothing decoded yet); from `snapshot` (a
    `data.snapshot.SplitSnapshot` or `data.selection.SetSplits`) when given, so that one evaluation reads one
    version of the split; `data`: the registered set(s) whose split it is (default: the built-in set)."""
    if snapshot is None and data not in (None, "", BUILTIN):
        snapshot = open_sets(data, dataset_dir=dataset_dir, splits_dir=splits_dir)
    if snapshot is None:
        return SegmentationDataset.from_split(split, dataset_dir, splits_dir, cache=False).items
    return SegmentationDataset.from_table(snapshot.table(split), dataset_dir, cache=False).items


def _image_facts(rgb: np.ndarray, mask: np.ndarray, image_path: Path) -> dict:
    """Per-image covariates for error analysis, computed once here (on the image at mask size)."""
    from PIL import Image

    with Image.open(image_path) as img:  # header only: the stored size, before resizing to the mask
        width, height = img.size
    h, w = rgb.shape[:2]
    return {"image_height": height, "image_width": width, "resized": (height, width) != (h, w),
            "aspect_ratio": w / h, **image_facts(rgb, mask)}


def _iter_batches(items: pd.DataFrame, batch_size: int, progress: bool, desc: str, loader=None):
    """Batches of (rows, decoded pairs): by `loader(image_path, mask_path)` (an external set's), else by each row's
    own mask rule (`load_item`)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, leave=False, disable=not progress)
    try:
        for start in range(0, len(items), batch_size):
            rows = items.iloc[start:start + batch_size]
            pairs = [loader(Path(r.image_path), Path(r.mask_path)) if loader is not None else load_item(r)
                     for r in rows.itertuples(index=False)]
            yield rows, pairs
            bar.update(len(rows))
    finally:
        bar.close()


def _predict(predictor, images: list[np.ndarray], masks: list[np.ndarray], ids: list[str]) -> list[np.ndarray]:
    probs = predictor.predict_proba_batch(images)
    out = []
    for prob, mask, id_ in zip(probs, masks, ids, strict=True):
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != mask.shape:
            raise SeglibError(f"image {id_}: prediction is {prob.shape[1]}x{prob.shape[0]} but its mask is "
                              f"{mask.shape[1]}x{mask.shape[0]}; predictions must be at mask resolution")
        out.append(prob)
    return out


def collect_probabilities(predictor, split: str | PairSet, dataset_dir=None, splits_dir=None, *, batch_size: int = 8,
                          progress: bool = True, limit: int | None = None, items: pd.DataFrame | None = None
                          ) -> list[dict]:
    """Run the model once over a split (or an external set, a `PairSet`; or the split's `items` already read);
    records hold id, mask (uint8 0/1) and prob (float32), both at mask size, plus the image covariates. Kept in
    memory so a threshold sweep never re-runs the model."""
    pairs = split if isinstance(split, PairSet) else None
    if items is None:
        items = pairs.items if pairs is not None else split_items(split, dataset_dir, splits_dir)
    loader = pairs.load if pairs is not None else None
    name = pairs.name if pairs is not None else split
    if limit:
        items = items.head(limit)
    records = []
    for rows, decoded in _iter_batches(items, batch_size, progress, f"evaluate {name}", loader):
        ids = rows["id"].astype(str).tolist()
        images, masks = [p[0] for p in decoded], [p[1] for p in decoded]
        probs = _predict(predictor, images, masks, ids)
        for id_, row, image, mask, prob in zip(ids, rows.itertuples(index=False), images, masks, probs,
                                               strict=True):
            records.append({"id": id_, "mask": mask, "prob": prob, **_image_facts(image, mask, Path(row.image_path))})
    return records


def predictions_for_split(predictor, split: str, dataset_dir=None, limit: int | None = None, *,
                          splits_dir=None, batch_size: int = 8, progress: bool = False) -> list[dict]:
    """Images, masks and probabilities of a split for display (notebooks 04/05).

    Each dict: id, image (HxWx3 uint8 RGB at the mask's size), mask (uint8 0/1), prob (float32 HxW),
    pred (uint8 0/1 at `predictor.threshold`).
    """
    items = split_items(split, dataset_dir, splits_dir)
    if limit:
        items = items.head(limit)
    out = []
    for rows, pairs in _iter_batches(items, batch_size, progress, f"predict {split}"):
        ids = rows["id"].astype(str).tolist()
        images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
        probs = _predict(predictor, images, masks, ids)
        for id_, image, mask, prob in zip(ids, images, masks, probs, strict=True):
            out.append({"id": id_, "image": image, "mask": mask, "prob": prob,
                        "pred": (prob >= predictor.threshold).astype(np.uint8)})
    return out
