"""Masks that do not flicker on video: probabilities averaged over frames where the picture is still.

`TemporalSmoother` keeps an exponential average of each pixel's probability, p = w * p_now + (1 - w) * p_before,
with w = `alpha` where the picture did not change and rising to 1 (the current frame alone) where it moved, so a
moving arm is not dragged behind; after a cut (the whole picture changed) it starts again. `consecutive_iou`
measures flicker: the mean IoU between consecutive frames' masks (1 = none).
"""

from __future__ import annotations

import cv2
import numpy as np

SMOOTHING_ALPHA = 0.4  # weight of the current frame where the picture is still
MOTION_LEVEL = 12.0  # grey-level change (0-255, after a small blur) at which a pixel counts as moving
CUT_LEVEL = 40.0  # mean grey-level change over the frame at which the scene counts as cut
MOTION_WIDTH = 160  # the motion map is computed at this width (cheap, and robust to sensor noise)


class TemporalSmoother:
    """Exponential average of a video's probabilities with a motion-aware reset (see the module)."""

    def __init__(self, alpha: float = SMOOTHING_ALPHA, motion_level: float = MOTION_LEVEL,
                 cut_level: float = CUT_LEVEL):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha {alpha}: must be in (0, 1]")
        self.alpha, self.motion_level, self.cut_level = alpha, motion_level, cut_level
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        self._prob: np.ndarray | None = None
        self._grey: np.ndarray | None = None

    def __call__(self, prob: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """The smoothed probabilities (HxW float32) for this frame, given its probabilities and its pixels."""
        prob = np.asarray(prob, np.float32)
        grey = _small_grey(rgb)
        if self._prob is None or self._prob.shape != prob.shape or self._grey.shape != grey.shape:
            self._prob, self._grey = prob, grey
            return prob
        change = np.abs(grey - self._grey)
        self._grey = grey
        if float(change.mean()) > self.cut_level:
            self.cuts += 1
            self._prob = prob
            return prob
        moving = np.clip(change / self.motion_level, 0.0, 1.0)
        weight_small = self.alpha + (1.0 - self.alpha) * moving
        weight = cv2.resize(weight_small, (prob.shape[1], prob.shape[0]), interpolation=cv2.INTER_LINEAR)
        self._prob = weight * prob + (1.0 - weight) * self._prob
        return self._prob


def _small_grey(rgb: np.ndarray) -> np.ndarray:
    """The frame in grey at MOTION_WIDTH, slightly blurred (float32)."""
    h, w = rgb.shape[:2]
    width = min(w, MOTION_WIDTH)
    height = max(1, round(h * width / w))
    grey = cv2.cvtColor(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(grey.astype(np.float32), (5, 5), 0)


def consecutive_iou(masks) -> float:
    """Mean IoU between each frame's mask and the next one's (1.0: no flicker; two empty masks agree fully)."""
    masks = [np.asarray(m) > 0 for m in masks]
    if len(masks) < 2:
        return 1.0
    ious = []
    for a, b in zip(masks[:-1], masks[1:], strict=True):
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else np.logical_and(a, b).sum() / union)
    return float(np.mean(ious))
