"""What a mask's probability map says about how good the mask is, measured without ground truth.

`mask_features(prob, threshold, flip_iou)` gives the numbers `seglib.predict.quality` turns into a predicted
IoU: the uncertainty along the mask's edge, the share of uncertain pixels, the figure's share of the photo, its
fragments, the confidence inside it, the IoU the probabilities expect of their own mask, and (where flip TTA is
computed anyway) the agreement between the photo's mask and its mirror image's. `FlipProbe` wraps a network so
that a Predictor with flip TTA also reports that agreement, at no extra cost: the network is called once for the
photo and its mirror image, as TTA calls it.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

# the feature names, in the order a fitted estimator stores its coefficients
EDGE_UNCERTAINTY = "edge_uncertainty"
UNCERTAIN_SHARE = "uncertain_share"
UNCERTAIN_TO_FIGURE = "uncertain_to_figure"
FIGURE_SHARE = "figure_share"
FRAGMENTS = "fragments"
LARGEST_SHARE = "largest_share"
INSIDE_CONFIDENCE = "inside_confidence"
SELF_IOU = "self_iou"
FLIP_IOU = "flip_iou"
PLAIN_FEATURES = (EDGE_UNCERTAINTY, UNCERTAIN_SHARE, UNCERTAIN_TO_FIGURE, FIGURE_SHARE, FRAGMENTS, LARGEST_SHARE,
                  INSIDE_CONFIDENCE, SELF_IOU)
FEATURES = (*PLAIN_FEATURES, FLIP_IOU)

UNCERTAIN_BAND = (0.3, 0.7)  # a probability in this band is "uncertain" (as evaluate's uncertain_fraction)
FRAGMENT_MIN_SHARE = 0.001  # a connected piece of the mask counts as a fragment from this share of the photo
FEATURE_MAX_SIDE = 1024  # larger probability maps are measured at this longest side (area-averaged)


def mask_features(prob: np.ndarray, threshold: float, flip_iou: float | None = None) -> dict[str, float]:
    """The features of one HxW float probability map thresholded at `threshold` (`FEATURES`; flip_iou NaN
    when not given). Every value is finite; an empty mask has no edge (edge uncertainty 0) and no inside
    (inside confidence 0)."""
    p = _measured_size(np.asarray(prob, dtype=np.float32))
    mask = p >= threshold
    area = int(np.count_nonzero(mask))
    certainty = 4.0 * p * (1.0 - p)  # 0 where the network is sure, 1 at p = 0.5
    low, high = UNCERTAIN_BAND
    uncertain = int(np.count_nonzero((p > low) & (p < high)))
    band = _edge_band(mask)
    outside = float(p[~mask].sum())
    inside = float(p[mask].sum())
    pieces = _pieces(mask, FRAGMENT_MIN_SHARE * p.size)
    return {
        EDGE_UNCERTAINTY: float(certainty[band].mean()) if band.any() else 0.0,
        UNCERTAIN_SHARE: uncertain / p.size,
        UNCERTAIN_TO_FIGURE: uncertain / max(area, 1),
        FIGURE_SHARE: area / p.size,
        FRAGMENTS: float(len(pieces)),
        LARGEST_SHARE: max(pieces) / area if pieces else 0.0,
        INSIDE_CONFIDENCE: inside / area if area else 0.0,
        # the IoU the map expects of its own mask, reading each probability as the chance the pixel is figure
        SELF_IOU: inside / (area + outside) if area + outside > 0 else 1.0,
        FLIP_IOU: float(flip_iou) if flip_iou is not None else float("nan"),
    }


def _measured_size(p: np.ndarray) -> np.ndarray:
    """The map, area-averaged down to FEATURE_MAX_SIDE when larger (features of a 4000 px photo in milliseconds)."""
    h, w = p.shape
    if max(h, w) <= FEATURE_MAX_SIDE:
        return p
    scale = FEATURE_MAX_SIDE / max(h, w)
    return cv2.resize(p, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _edge_band(mask: np.ndarray) -> np.ndarray:
    """The pixels within about 1% of the photo's diagonal of the mask's edge, on both sides."""
    radius = max(1, round(0.01 * float(np.hypot(*mask.shape))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    m = mask.astype(np.uint8)
    return cv2.dilate(m, kernel) != cv2.erode(m, kernel)


def _pieces(mask: np.ndarray, min_area: float) -> list[int]:
    """The areas of the mask's connected pieces (8-connected) of at least `min_area` pixels."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [int(a) for a in stats[1:n, cv2.CC_STAT_AREA] if a >= min_area]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one shape; 1.0 when both are empty."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


class FlipProbe:
    """A network (`seglib.predict.predictor.Network`) that, asked for flip TTA, calls the network once on the
    photos and their mirror images (as TTA does), returns their average, and keeps for the calling thread
    the IoU between each photo's mask and its mirror image's at `threshold`, at the
    network's resolution (`start`, then `first_flip_iou`). Without TTA it is the network itself. Other attributes
    are the wrapped network's, so it stands wherever the network does."""

    def __init__(self, network, threshold: float):
        self.network = network
        self.threshold = float(threshold)
        self._local = threading.local()

    def __getattr__(self, name: str):  # only for names not set in __init__ (a copy looks before they are)
        if name in ("network", "threshold", "_local"):
            raise AttributeError(name)
        return getattr(self.network, name)

    def __call__(self, batch: np.ndarray, tta: bool = False, **kwargs) -> np.ndarray:
        if not tta:
            return self.network(batch, False, **kwargs)
        n = len(batch)
        both = self.network(np.concatenate([batch, batch[..., ::-1]]), False, **kwargs)
        plain, mirrored = both[:n], both[n:, :, ::-1]
        ious = [mask_iou(a >= self.threshold, b >= self.threshold) for a, b in zip(plain, mirrored, strict=True)]
        calls = getattr(self._local, "calls", None)
        if calls is not None:
            calls.append(ious)
        probs = plain + mirrored
        probs *= 0.5
        return probs

    def start(self) -> None:
        """Forget this thread's earlier calls: call it before predicting a photo."""
        self._local.calls = []

    def first_flip_iou(self) -> float | None:
        """The flip IoU of the first photo of this thread's first call since `start` (a photo predicted at several
        input sizes, or looked at twice, calls the network more than once: the first call is its whole photo at
        the first size); None when none ran with TTA."""
        calls = getattr(self._local, "calls", None)
        return calls[0][0] if calls else None
