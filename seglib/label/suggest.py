"""What to label next: unlabelled photos ranked by expected gain (`rank_photos`, `seglib label suggest`).

The gain of labelling a photo is how wrong the model probably is on it: 1 - its predicted IoU where the run has a
quality estimate (`seglib.predict.quality`), else the model's own doubt, 1 - the soft IoU of its mask with its
probabilities (`mask_uncertainty`). Photos are then picked greedily, each one's gain discounted by its similarity to
the photos already picked, so that ten near-identical photos are not all picked: a burst of one scene teaches the
model about as much as one of its shots.

Similarity is the cosine of two photos' colour-and-layout thumbnails (`photo_descriptor`), not of the network's
own features: it is computed from the decoded photo alone, so it costs no second pass through the network, works
the same for every model family and for an ONNX export (whose layers cannot be read), and does not change as
the model is retrained. Near-duplicates (the same scene, a re-encoded, brightened or slightly cropped copy) come
out near 1; the loose likeness of unrelated photos of people (a figure in the middle, a plain background) is
damped by raising the similarity to a power before it discounts. The weakness: two different people
photographed against the same backdrop count as similar too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from seglib.infra.errors import ConfigError, SeglibError

logger = logging.getLogger(__name__)

DIVERSITY_DEFAULT = 0.5  # the gain is multiplied by (1 - similarity ** LIKENESS_POWER) ** (2 * diversity)
# Thumbnails of any two photos of people share a loose likeness (a figure in the middle, a plain background): the
# similarity is raised to this power so that such likeness counts little and near-duplicates (near 1) count fully.
LIKENESS_POWER = 4
GAINS = AUTO_GAIN, UNCERTAINTY_GAIN, QUALITY_GAIN = ("auto", "uncertainty", "predicted-iou")
THUMBNAIL_SIDE = 12  # the side of the descriptor's thumbnail (RGB)
BATCH = 8  # photos decoded and predicted at a time


def rank_photos(predictor, photos: Iterable, *, n: int | None = None, diversity: float = DIVERSITY_DEFAULT,
                gain: str = AUTO_GAIN, labelled: Iterable = (), quality: pd.DataFrame | None = None) -> pd.DataFrame:
    """The photos to label first, best first: one row per picked photo (`n` of them, every readable one when
    None) with its rank (1 = label first), path, the gain it was picked with, its uncertainty and its largest
    similarity to a photo picked or labelled before it.

    `predictor`: a `Predictor`, or a checkpoint path (loaded with the threshold and TTA chosen on val; its
    quality estimate is the one beside it, fitted on its val photos when missing: `seglib.predict.quality`).
    `gain`: "uncertainty" (the model's doubt, `mask_uncertainty`), "predicted-iou" (1 - the predicted IoU, in a
    `predicted_iou` column), or "auto": the predicted IoU where there is one, the uncertainty elsewhere. The
    predicted IoUs come from `quality` (`quality_table`'s table of these photos, made already), else from the
    checkpoint's quality estimate; a bare `Predictor` has no file to find one beside.
    `diversity` from 0 (gain alone) to 1 (similar photos strongly held back). `labelled`: photos labelled already
    (the model's training photos): a photo like one of them counts as picked (only decoded, never predicted).
    An unreadable photo is skipped with a warning and listed in the result's `.attrs["skipped"]` as (path,
    reason)."""
    check_choice(n, diversity, gain)
    model_file = None
    if isinstance(predictor, str | Path):
        from seglib.infra.devices import resolve_device
        from seglib.predict.predictor import Predictor

        model_file = Path(predictor)
        predictor = Predictor.from_checkpoint(model_file, device=resolve_device("auto"))
    paths, uncertainties, vectors, skipped = measure_photos(predictor, photos)
    table = pd.DataFrame({"photo": paths, "uncertainty": uncertainties})
    gains = table["uncertainty"].to_numpy(float)
    if gain != UNCERTAINTY_GAIN and paths:
        predicted = predicted_ious(predictor, paths, quality, model_file, required=gain == QUALITY_GAIN)
        if predicted is not None:
            table["predicted_iou"] = predicted
            gains = np.where(np.isfinite(predicted), 1.0 - np.nan_to_num(predicted), gains)
    vectors = np.asarray(vectors) if vectors else np.zeros((0, THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3))
    order, picked_gains, similarities = greedy_pick(gains, vectors, len(paths) if n is None else min(n, len(paths)),
                                                    diversity, closest=similarity_to(vectors, labelled))
    ranked = table.iloc[order].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(order) + 1))
    ranked.insert(2, "gain", picked_gains)
    ranked.insert(4, "similarity", similarities)
    ranked.attrs["skipped"] = skipped
    return ranked


def shared_sample(items: pd.DataFrame, limit: int, seed: int = 0) -> list[str]:
    """At most `limit` photo paths of a split (`items`: image_path and, for several sets, dataset), shared
    equally among its sets (a set with fewer photos gives the rest to the others), each set's share drawn with a
    fixed seed; every photo when `limit` is 0 or the split is no larger."""
    if limit < 0:
        raise ConfigError(f"max_photos {limit}: expected 0 (every photo) or a positive number")
    if not limit or len(items) <= limit:
        return items["image_path"].astype(str).tolist()
    groups = [g for _, g in items.groupby(items["dataset"] if "dataset" in items else 0, sort=False)]
    chosen, left = [], limit
    for i, group in enumerate(sorted(groups, key=len)):  # smallest first: what they cannot use goes to the rest
        take = min(len(group), left // (len(groups) - i))
        chosen.append(group.sample(n=take, random_state=seed) if take < len(group) else group)
        left -= take
    return pd.concat(chosen).sort_index()["image_path"].astype(str).tolist()


def check_choice(n: int | None, diversity: float, gain: str) -> None:
    """ConfigError (one line) for a count below 1, a diversity outside 0..1 or an unknown gain."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"n={n!r}: give how many photos to suggest, 1 or more (None: rank them all)")
    if not 0.0 <= float(diversity) <= 1.0:
        raise ConfigError(f"diversity={diversity!r}: must be between 0 (uncertainty alone) and 1")
    if gain not in GAINS:
        raise ConfigError(f"gain={gain!r}: expected one of {', '.join(GAINS)}")


def measure_photos(predictor, photos: Iterable) -> tuple[list[str], list[float], list[np.ndarray], list[tuple]]:
    """(paths, uncertainties, descriptors, skipped) of the readable photos, decoded and predicted a batch at a time
    (videos and unreadable files skipped and reported)."""
    from seglib.predict.inputs import is_video, load_input

    paths, uncertainties, vectors, skipped = [], [], [], []
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        probs = predictor.predict_proba_batch([image for _, image in batch])
        for (path, image), prob in zip(batch, probs, strict=True):
            paths.append(path)
            uncertainties.append(mask_uncertainty(prob, predictor.threshold))
            vectors.append(photo_descriptor(image))
        batch.clear()

    for photo in photos:
        path = str(photo)
        if is_video(Path(path)):
            skipped.append((path, "a video: only photos are ranked"))
            continue
        try:
            image, _ = load_input(path)
        except SeglibError as exc:
            skipped.append((path, str(exc)))
            continue
        batch.append((path, image))
        if len(batch) == BATCH:
            flush()
    if batch:
        flush()
    for path, reason in skipped:
        logger.warning(f"{path}: skipped ({reason})" if not reason.startswith(path) else f"skipped: {reason}")
    return paths, uncertainties, vectors, skipped


def mask_uncertainty(prob: np.ndarray, threshold: float = 0.5) -> float:
    """1 - the soft IoU of the thresholded mask with the probabilities, in 0..1: the IoU the model itself
    expects to miss. 0 when every pixel is sure (probabilities 0 or 1); a figure half made of pixels near the
    threshold, or doubtful pixels around it, scores high. Scale-free: a small figure's doubtful edge counts
    as much as a large figure's. A photo with no person and no doubt scores 0."""
    prob = np.clip(np.asarray(prob, np.float64), 0.0, 1.0)
    mask = prob >= threshold
    inside = float(prob[mask].sum())  # soft intersection: the mask's own pixels, weighted by the probability
    union = float(mask.sum()) + float(prob[~mask].sum())  # the mask, plus the probability it left out
    return 0.0 if union <= 0 else float(1.0 - inside / union)


def photo_descriptor(image: np.ndarray) -> np.ndarray:
    """A photo's colour and layout in a unit vector: its 12 x 12 colour thumbnail (area filter, any size and
    aspect), less the thumbnail's mean so that a brighter copy of a scene stays similar to it. Zero for a
    photo of one flat colour."""
    thumb = cv2.resize(np.ascontiguousarray(image[..., :3]), (THUMBNAIL_SIDE, THUMBNAIL_SIDE),
                       interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255.0
    thumb -= thumb.mean()
    norm = np.linalg.norm(thumb)
    return thumb / norm if norm > 1e-9 else np.zeros_like(thumb)


def similarity_to(vectors: np.ndarray, photos: Iterable) -> np.ndarray:
    """Each descriptor's largest similarity (negative counted as 0) to the readable photos of `photos`."""
    from seglib.predict.inputs import load_input

    closest = np.zeros(len(vectors))
    for photo in photos:
        try:
            image, _ = load_input(photo)
        except SeglibError:
            continue
        closest = np.maximum(closest, np.clip(vectors @ photo_descriptor(image), 0.0, 1.0))
    return closest


def greedy_pick(gains: np.ndarray, vectors: np.ndarray, n: int, diversity: float, *,
                closest: np.ndarray | None = None) -> tuple[list[int], list[float], list[float]]:
    """Greedy selection: each step picks the photo with the largest gain x (1 - s ** LIKENESS_POWER) ** (2 x
    diversity), s its largest cosine similarity (negative counted as 0) to a photo already picked (or to one
    already labelled: `closest`, the starting s); ties go to the earlier photo. Returns (indices in pick order,
    each one's discounted gain, each one's s)."""
    gains = np.asarray(gains, np.float64)
    closest = np.zeros(len(gains)) if closest is None else np.asarray(closest, np.float64).copy()
    free = np.ones(len(gains), bool)
    order, picked_gains, similarities = [], [], []
    for _ in range(n):
        scores = np.where(free, gains * (1.0 - closest ** LIKENESS_POWER) ** (2.0 * diversity), -np.inf)
        best = int(np.argmax(scores))
        order.append(best)
        picked_gains.append(float(scores[best]))
        similarities.append(float(closest[best]))
        free[best] = False
        closest = np.maximum(closest, np.clip(vectors @ vectors[best], 0.0, 1.0))
    return order, picked_gains, similarities


def predicted_ious(predictor, paths: list[str], quality: pd.DataFrame | None, model_file: Path | None, *,
                   required: bool) -> np.ndarray | None:
    """Each photo's predicted IoU (NaN where there is none), in the order of `paths`: from `quality`, else from
    the quality estimate of `model_file`; None without either. A SeglibError when `required` and there is none."""
    if quality is None and model_file is not None:
        from seglib.predict.quality import quality_table

        quality = quality_table(predictor, paths, model_file=model_file)
    predicted = None
    if quality is not None:
        by_photo = dict(zip(quality["photo"].astype(str), quality["predicted_iou"].astype(float), strict=True))
        predicted = np.array([by_photo.get(p, np.nan) for p in paths], float)
    if required and (predicted is None or not np.isfinite(predicted).any()):
        raise SeglibError(f"gain={QUALITY_GAIN}: no predicted IoU for these photos ({predictor.source or 'the model'} "
                          f"has no quality estimate: `seglib evaluate` fits one on val); use gain={UNCERTAINTY_GAIN} "
                          f"or {AUTO_GAIN}")
    return predicted
