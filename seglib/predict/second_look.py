"""A second look at each figure: found on the first pass, cropped from the full-resolution photo with a margin,
predicted again as a photo of its own (same input sizes and cap, so at a higher resolution), pasted back.

A figure is a connected component of the first pass's probabilities at `LOOK_LEVEL` or more covering at least
`LOOK_MIN_AREA` of the photo (a fixed level, not the threshold: val chooses that after the probabilities are
made, and the look must give val, test and predict the same probabilities); its box grows by `LOOK_MARGIN` of
its longer side on each side (context, and room for the paste's feathered edge); boxes that overlap are merged. A crop is predicted again only when the network sees it at least `LOOK_MIN_GAIN` times as
many input pixels per photo pixel as on the first pass: a figure that already fills most of the photo is left as
it is. Inside the box the crop's probabilities replace the first pass's, blended linearly over the margin toward
the box's edges inside the photo (a box edge on the photo's border keeps the crop's).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

LOOK_LEVEL = 0.5  # the probability at which the first pass's figures are outlined
LOOK_MIN_AREA = 0.002  # share of the photo: a smaller component is a speck, not a figure
LOOK_MARGIN = 0.15  # context around a figure's box, as a share of the box's longer side
LOOK_MIN_GAIN = 1.5  # a crop's magnification over the first pass's, at least, for it to be predicted again
LOOK_MAX_FIGURES = 4  # the largest figures looked at again: a crowd costs at most this many more predictions

Box = tuple[int, int, int, int]  # top, left, bottom, right (exclusive), in photo pixels


def figure_boxes(prob: np.ndarray, level: float = LOOK_LEVEL) -> list[Box]:
    """The boxes (with their margins, merged where they overlap) of the largest figures of `prob` >= `level`."""
    height, width = prob.shape
    mask = (np.asarray(prob) >= level).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = [stats[k] for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= LOOK_MIN_AREA * height * width]
    found = sorted(found, key=lambda s: -int(s[cv2.CC_STAT_AREA]))[:LOOK_MAX_FIGURES]
    boxes = []
    for x, y, w, h, _ in found:
        margin = round(LOOK_MARGIN * max(w, h))
        boxes.append((max(0, y - margin), max(0, x - margin), min(height, y + h + margin), min(width, x + w + margin)))
    return merged(boxes)


def merged(boxes: list[Box]) -> list[Box]:
    """`boxes` with every overlapping pair replaced by their union, until none overlap."""
    boxes = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    changed = True
                    break
            if changed:
                break
    return boxes


def feather(box: Box, height: int, width: int) -> np.ndarray:
    """The crop's weight in the blend, box-sized float32: 1 inside, falling linearly to 0 over about the margin
    toward each box edge that lies inside the HxW photo."""
    top, left, bottom, right = box
    ramp = max(1.0, LOOK_MARGIN / (1 + 2 * LOOK_MARGIN) * max(bottom - top, right - left))

    def along(start: int, stop: int, end: int) -> np.ndarray:
        centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
        weight = np.ones(stop - start, np.float32)
        if start > 0:
            weight = np.minimum(weight, (centres - start) / ramp)
        if stop < end:
            weight = np.minimum(weight, (stop - centres) / ramp)
        return np.clip(weight, 0.0, 1.0)

    return np.minimum.outer(along(top, bottom, height), along(left, right, width)).astype(np.float32)


def second_look(predict: Callable[[list[np.ndarray]], list[np.ndarray]], sizes: Callable[[int, int], tuple[int, ...]],
                images: list[np.ndarray], probs: list[np.ndarray]) -> list[np.ndarray]:
    """`probs` with each figure's box predicted again: `predict(crops)` gives a crop's probabilities at its own
    size, `sizes(h, w)` the input sizes an hxw photo is predicted at (for the magnification each pass gives)."""
    crops, where = [], []
    for i, (image, prob) in enumerate(zip(images, probs, strict=True)):
        height, width = prob.shape
        first = max(sizes(height, width)) / max(height, width)
        for box in figure_boxes(prob):
            top, left, bottom, right = box
            crop_h, crop_w = bottom - top, right - left
            if max(sizes(crop_h, crop_w)) / max(crop_h, crop_w) >= LOOK_MIN_GAIN * first:
                crops.append(np.ascontiguousarray(image[top:bottom, left:right]))
                where.append((i, box))
    if not crops:
        return probs
    out = list(probs)
    for (i, box), crop_prob in zip(where, predict(crops), strict=True):
        if out[i] is probs[i]:
            out[i] = np.array(probs[i], dtype=np.float32, copy=True)
        top, left, bottom, right = box
        region = out[i][top:bottom, left:right]
        region += feather(box, *out[i].shape) * (np.asarray(crop_prob, np.float32) - region)
    return out
