"""Scale augmentation (`augment=zoom`): the photo zoomed out (shrunk and padded: a small figure) or in (cropped
around the figure: one that fills the frame), so that training sees figures of every size, not only the sizes of its
photos. A network fine-tuned on portraits otherwise meets a full-length figure in a small photo, magnified to the
input size, at a scale it never learned.

The figure's size is drawn first: the share of the frame its bounding box fills along its tighter side,
log-uniform in `FILLS` (as many small figures as large ones); the zoom follows from it. A figure cut by the photo's
frame (a portrait cut at the chest) stays against that edge when the photo shrinks, so no cut edge floats in the
middle of the picture. Masks (and any other mask target: a teacher's probabilities) are resampled nearest, so a
binary mask stays binary and any other value stays what it was.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

FILLS = (0.15, 1.0)  # the figure's share of the frame after the zoom, drawn log-uniform in this range
MAX_ZOOM_IN = 3.0  # never magnify more than this: detail the photo does not hold would be invented by blur


class ZoomFigure(A.DualTransform):
    """Zoom the photo so that the figure (mask > 0) fills a share of the frame drawn from `fills`: out (the photo
    shrunk onto a canvas of its own size, padded with `fill`) or in (a window around the figure enlarged to the
    photo's size, at most `max_zoom_in` times). A photo without a figure is left as it is."""

    def __init__(self, fills: tuple[float, float] = FILLS, max_zoom_in: float = MAX_ZOOM_IN, fill: int = 0,
                 p: float = 0.7):
        super().__init__(p=p)
        self.fills = fills
        self.max_zoom_in = max_zoom_in
        self.fill = fill

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fills", "max_zoom_in", "fill")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = np.asarray(data["mask"])
        h, w = mask.shape[:2]
        ys, xs = np.nonzero(mask > 0 if mask.ndim == 2 else (mask > 0).any(axis=-1))
        if not len(ys):
            return {"window": None}
        top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        fills_now = max((bottom - top) / h, (right - left) / w)
        rng = self.random_generator
        wanted = float(np.exp(rng.uniform(np.log(self.fills[0]), np.log(self.fills[1]))))
        factor = min(wanted / fills_now, self.max_zoom_in)
        if factor >= 1:  # in: a window of the photo's aspect holding the whole figure, enlarged to the photo's size
            wh, ww = max(1, round(h / factor)), max(1, round(w / factor))
            y = int(rng.integers(max(0, bottom - wh), min(top, h - wh) + 1))
            x = int(rng.integers(max(0, right - ww), min(left, w - ww) + 1))
            return {"window": ("in", (y, x, wh, ww))}
        nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
        y = _place(rng, h - nh, cut_low=top == 0, cut_high=bottom == h)
        x = _place(rng, w - nw, cut_low=left == 0, cut_high=right == w)
        return {"window": ("out", (y, x, nh, nw))}

    def apply(self, img: np.ndarray, window: tuple | None = None, **params) -> np.ndarray:
        return _zoomed(img, window, cv2.INTER_LINEAR, cv2.INTER_AREA, self.fill)

    def apply_to_mask(self, mask: np.ndarray, window: tuple | None = None, **params) -> np.ndarray:
        return _zoomed(mask, window, cv2.INTER_NEAREST, cv2.INTER_NEAREST, 0)


def _place(rng: np.random.Generator, room: int, *, cut_low: bool, cut_high: bool) -> int:
    """Where a shrunk photo goes along one axis with `room` pixels to spare: against the edge that cut the figure,
    at random otherwise (a figure cut at both edges: against either)."""
    if cut_low and cut_high:
        return 0 if rng.random() < 0.5 else room
    if cut_low or cut_high:
        return 0 if cut_low else room
    return int(rng.integers(0, room + 1))


def _zoomed(array: np.ndarray, zoom: tuple | None, enlarge: int, shrink: int, fill: int) -> np.ndarray:
    """`array` zoomed in (a window enlarged with `enlarge`) or out (shrunk with `shrink` onto a canvas of `fill`)."""
    if zoom is None:
        return array
    h, w = array.shape[:2]
    kind, (y, x, zh, zw) = zoom
    if kind == "in":
        return cv2.resize(np.ascontiguousarray(array[y:y + zh, x:x + zw]), (w, h), interpolation=enlarge)
    out = np.full_like(array, fill)
    out[y:y + zh, x:x + zw] = cv2.resize(array, (zw, zh), interpolation=shrink).reshape(out[y:y + zh, x:x + zw].shape)
    return out
