"""A photo <-> the network's input, in NumPy and OpenCV alone: the geometry of the input step (square letterbox,
plain resize, or rectangular `rect`), the normalisation, and the way back to the photo's size.

`network_input` gives exactly what `seglib.transforms.pipelines.eval_transform` gives (the same OpenCV resize and padding,
the same float32 look-up table as Albumentations' Normalize; tests/test_geometry.py holds them equal), without
importing Albumentations or torch: prediction starts in a fraction of a second.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from seglib.infra.errors import ConfigError
from seglib.settings import GEOMETRIES, LETTERBOX, RECT, RESIZE

# ImageNet statistics: the normalisation smp encoders expect; stored in every checkpoint.
NORMALIZATION = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def network_input(rgb: np.ndarray, size: int, geometry: str = LETTERBOX, multiple: int = 32) -> np.ndarray:
    """An HxWx3 uint8 RGB photo as the network's (3, h, w) float32 input: resized (area filter) and padded with
    black as `geometry` says, then normalised."""
    if geometry not in GEOMETRIES:
        raise ConfigError(f"geometry {geometry!r} unknown; expected one of {', '.join(GEOMETRIES)}")
    height, width = rgb.shape[:2]
    if geometry == RESIZE:
        new_h, new_w = size, size
    else:
        _, _, new_h, new_w = letterbox_box(height, width, size)
    image = rgb if (new_h, new_w) == (height, width) else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    padded_h, padded_w = input_shape(height, width, size, geometry, multiple)
    top, left = (padded_h - new_h) // 2, (padded_w - new_w) // 2
    luts = _normalize_luts()
    # black padding, normalised: each channel's table at 0 (only the photo's own pixels go through the tables)
    out = np.empty((3, padded_h, padded_w), np.float32)
    out[:] = luts[:, :1, None]
    for c in range(3):
        out[c, top:top + new_h, left:left + new_w] = cv2.LUT(np.ascontiguousarray(image[:, :, c]), luts[c])
    return out


@functools.cache
def _normalize_luts() -> np.ndarray:
    """(3, 256) float32: each channel's uint8 value normalised, computed as Albumentations computes it."""
    mean = np.asarray(NORMALIZATION["mean"], np.float32) * np.float32(255.0)
    denominator = np.reciprocal(np.asarray(NORMALIZATION["std"], np.float32) * np.float32(255.0))
    return ((np.arange(256, dtype=np.float32) - mean[:, None]) * denominator[:, None]).astype(np.float32)


def input_shape(height: int, width: int, size: int, geometry: str = LETTERBOX, multiple: int = 32) -> tuple[int, int]:
    """The network input's HxW for an HxW photo (what `input_ops` produces; batches group photos by it)."""
    if geometry != RECT:
        return size, size
    _, _, new_h, new_w = letterbox_box(height, width, size)
    return -(-new_h // multiple) * multiple, -(-new_w // multiple) * multiple


def letterbox_box(height: int, width: int, size: int, padded: tuple[int, int] | None = None
                  ) -> tuple[int, int, int, int]:
    """Where an HxW image, its longest side resized to `size`, lands inside the centred padding: (top, left,
    new_h, new_w). The padded input is size x size (letterbox) unless `padded` gives its HxW (rect)."""
    scale = size / max(height, width)
    new_h, new_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    padded_h, padded_w = padded or (size, size)
    return (padded_h - new_h) // 2, (padded_w - new_w) // 2, new_h, new_w


def unletterbox(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Map a padded probability map (square letterbox or rect) back to the original HxW: crop the padding,
    resize bilinearly. The longest side of the map is the input size (sizes are multiples of the stride)."""
    padded = prob.shape[-2], prob.shape[-1]
    top, left, new_h, new_w = letterbox_box(height, width, max(padded), padded)
    crop = np.ascontiguousarray(prob[top:top + new_h, left:left + new_w], dtype=np.float32)
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


def to_photo(prob: np.ndarray, height: int, width: int, geometry: str = LETTERBOX) -> np.ndarray:
    """Map a probability map back to the photo's HxW: undo the padding (letterbox, rect), or resize back."""
    if geometry in (LETTERBOX, RECT):
        return unletterbox(prob, height, width)
    return cv2.resize(np.ascontiguousarray(prob, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def pad_value() -> tuple[float, ...]:
    """A black pixel after Normalize: what the padding of a batch of mixed input shapes is filled with."""
    return tuple(-m / s for m, s in zip(NORMALIZATION["mean"], NORMALIZATION["std"], strict=True))


def denormalize(image: np.ndarray) -> np.ndarray:
    """Undo Normalize on a CHW float array; returns HWC uint8 for display."""
    mean = np.asarray(NORMALIZATION["mean"])[:, None, None]
    std = np.asarray(NORMALIZATION["std"])[:, None, None]
    return np.clip((image * std + mean).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
