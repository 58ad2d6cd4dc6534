"""Compositing augmentation (copy-paste; Ghiasi et al., CVPR 2021): the figure, cut out by its mask, pasted onto
another background, scaled and moved, as an Albumentations transform with a probability.

Backgrounds (`BackgroundPool`) are other training photos with their own people filled in (OpenCV's inpainting at
a small size: what is left is the scene, blurred where a person stood) or synthetic ones (a plain colour, a
gradient, a smooth random texture). A figure cut by the photo's frame (a portrait cut at the chest) stays against
the edge it was cut by, so no cut edge floats in the middle of the picture; one cut by two opposite edges keeps
its size. Randomness comes from the transform's own generator, which the dataset seeds per (seed, epoch, photo),
so an epoch's composites are reproducible.

Training sets it with the `composite` setting (the probability; 0 = off); notebook 02 previews it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np

# which kind of background a composite gets, and how often
BACKGROUND_KINDS = ("photo", "plain", "gradient", "texture")
BACKGROUND_WEIGHTS = (0.55, 0.1, 0.15, 0.2)
INPAINT_SIDE = 64  # people are filled in at this longest side, then scaled up: fast, and detail-free where they stood
SCALE = (0.6, 1.0)  # the figure's size on the new background, relative to its size in the photo


class BackgroundPool:
    """`pool(rng, (h, w))` -> an HxWx3 uint8 background: another photo of `photos` (a callable giving the
    (image, mask) pair at an index, and their number) with its people filled in, or a synthetic one. Without
    photos, synthetic backgrounds only."""

    def __init__(self, photos: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None, count: int = 0):
        self.photos = photos
        self.count = count if photos is not None else 0

    @classmethod
    def of_dataset(cls, dataset) -> BackgroundPool:
        """The training photos of a `SegmentationDataset` (its decoded cache) as backgrounds."""
        return cls(dataset.load, len(dataset))

    def __call__(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        weights = np.asarray(BACKGROUND_WEIGHTS, float)
        if self.count < 2:
            weights[0] = 0.0
        kind = BACKGROUND_KINDS[int(rng.choice(len(weights), p=weights / weights.sum()))]
        if kind == "photo":
            image, mask = self.photos(int(rng.integers(self.count)))  # its own photo now and then: its scene
            return people_removed(image, mask, shape)
        return synthetic_background(kind, rng, shape)


def people_removed(image: np.ndarray, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`image` resized to `shape` (h, w) with the pixels of `mask` (and a margin around them) filled in from
    their surroundings."""
    h, w = shape
    scene = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    hole = cv2.resize((mask > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    if not hole.any():
        return scene
    margin = max(3, round(0.02 * max(h, w)))
    hole = cv2.dilate(hole, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    factor = INPAINT_SIDE / max(h, w)
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    filled = cv2.inpaint(cv2.resize(scene, small, interpolation=cv2.INTER_AREA),
                         cv2.resize(hole, small, interpolation=cv2.INTER_NEAREST), 3, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(hole[..., None] > 0, filled, scene)


def synthetic_background(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A plain colour, a two-colour gradient at a random angle, or a smooth random texture, HxWx3 uint8."""
    h, w = shape
    if kind == "plain":
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (h, w, 3)).copy()
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        a, b = rng.integers(0, 256, (2, 3)).astype(np.float32)
        return (a + (b - a) * t[..., None]).astype(np.uint8)
    cells = int(rng.integers(3, 17))  # texture: random colours on a coarse grid, smoothly interpolated, plus grain
    coarse = rng.integers(0, 256, (cells, cells, 3)).astype(np.uint8)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    grain = rng.normal(0, rng.uniform(0, 12), (h, w, 1))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


class PasteOnBackground(A.DualTransform):
    """The figure (mask > 0) pasted onto a background from `backgrounds` (`BackgroundPool`), scaled by a factor
    drawn from `scale` and placed at random (against the edges that cut it); the mask follows the figure. The
    image is blended through a softened mask so the paste has no hard seam; the mask stays binary. A photo
    without a figure is left as it is."""

    def __init__(self, backgrounds: BackgroundPool | None = None, scale: tuple[float, float] = SCALE,
                 p: float = 0.5):
        super().__init__(p=p)
        self.backgrounds = backgrounds if backgrounds is not None else BackgroundPool()
        self.scale = scale

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale",)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data["mask"]
        h, w = mask.shape[:2]
        ys, xs = np.nonzero(mask)
        if not len(ys):
            return {"paste": None}
        top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        cut = {"top": top == 0, "bottom": bottom == h, "left": left == 0, "right": right == w}
        rng = self.random_generator
        factor = 1.0 if (cut["top"] and cut["bottom"]) or (cut["left"] and cut["right"]) else rng.uniform(*self.scale)
        fh, fw = max(1, round((bottom - top) * factor)), max(1, round((right - left) * factor))
        y = 0 if cut["top"] else h - fh if cut["bottom"] else int(rng.integers(0, h - fh + 1))
        x = 0 if cut["left"] else w - fw if cut["right"] else int(rng.integers(0, w - fw + 1))
        figure_mask = cv2.resize((mask[top:bottom, left:right] > 0).astype(np.uint8), (fw, fh),
                                 interpolation=cv2.INTER_NEAREST)
        return {"paste": {"box": (top, bottom, left, right), "at": (y, x, fh, fw), "figure_mask": figure_mask,
                          "background": self.backgrounds(rng, (h, w))}}

    def apply(self, img: np.ndarray, paste: dict | None = None, **params) -> np.ndarray:
        if paste is None:
            return img
        (top, bottom, left, right), (y, x, fh, fw) = paste["box"], paste["at"]
        figure = cv2.resize(img[top:bottom, left:right], (fw, fh), interpolation=cv2.INTER_AREA if fh < bottom - top
                            else cv2.INTER_LINEAR)
        alpha = cv2.GaussianBlur(paste["figure_mask"].astype(np.float32), (3, 3), 0)[..., None]
        out = paste["background"].copy()
        region = out[y:y + fh, x:x + fw].astype(np.float32)
        out[y:y + fh, x:x + fw] = np.clip(alpha * figure + (1 - alpha) * region + 0.5, 0, 255).astype(np.uint8)
        return out

    def apply_to_mask(self, mask: np.ndarray, paste: dict | None = None, **params) -> np.ndarray:
        if paste is None:
            return mask
        y, x, fh, fw = paste["at"]
        out = np.zeros_like(mask)
        out[y:y + fh, x:x + fw] = paste["figure_mask"].astype(mask.dtype) * mask.max()  # 1 or 255, as given
        return out
