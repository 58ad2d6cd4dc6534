"""Albumentations pipelines: seeded training augmentation and the deterministic photo -> network input step
(`geometry`: square letterbox, plain resize, or rectangular `rect`) for evaluation, and its inverse for predictions.

(seglib/__init__.py, imported before this module, sets NO_ALBUMENTATIONS_UPDATE=1 so albumentations does not
check for updates over the network.)
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from seglib.errors import ConfigError
from seglib.settings import GEOMETRIES

# ImageNet statistics: the normalisation smp encoders expect; stored in every checkpoint.
NORMALIZATION = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
AUGMENTATIONS = ("none", "light", "standard", "strong")


def letterbox_ops(size: int) -> list[A.BasicTransform]:
    """Resize the longest side to `size` (area filter for images, nearest for masks), pad to size x size."""
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(min_height=size, min_width=size, position="center", border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=0),
    ]


def resize_ops(size: int) -> list[A.BasicTransform]:
    """Stretch to size x size (area filter for images, nearest for masks): MediaPipe's own pre-processing."""
    return [A.Resize(size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)]


def rect_ops(size: int, multiple: int) -> list[A.BasicTransform]:
    """Resize the longest side to `size`, keep the aspect, pad (centred) only up to a multiple of `multiple` (the
    network's stride): a 4:3 photo at 448 becomes 448x336, not 448x448 with a quarter of it padding."""
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=multiple, pad_width_divisor=multiple,
                      position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
    ]


def input_ops(size: int, geometry: str = "letterbox", multiple: int = 32) -> list[A.BasicTransform]:
    """The photo -> network input step of a `geometry`: letterbox or resize (square), rect (HxW multiples of
    `multiple`)."""
    if geometry not in GEOMETRIES:
        raise ConfigError(f"geometry {geometry!r} unknown; expected one of {', '.join(GEOMETRIES)}")
    if geometry == "rect":
        return rect_ops(size, multiple)
    return letterbox_ops(size) if geometry == "letterbox" else resize_ops(size)


def describe_input(size: int, geometry: str = "letterbox") -> str:
    """How a photo becomes the network input, in words (model cards, the bench)."""
    return {"letterbox": f"{size}x{size} px, letterboxed (aspect kept, padded to the square)",
            "resize": f"{size}x{size} px, stretched (as MediaPipe does)",
            "rect": f"longest side {size} px, aspect kept (padded to a multiple of the network's stride)"}[geometry]


def input_shape(height: int, width: int, size: int, geometry: str = "letterbox", multiple: int = 32) -> tuple[int, int]:
    """The network input's HxW for an HxW photo (what `input_ops` produces; batches group photos by it)."""
    if geometry != "rect":
        return size, size
    _, _, new_h, new_w = letterbox_box(height, width, size)
    return -(-new_h // multiple) * multiple, -(-new_w // multiple) * multiple


def geometric_ops(strength: str) -> list[A.BasicTransform]:
    """Geometric augmentation: scale, rotation, shift (Affine) and horizontal flip."""
    if strength == "none":
        return []
    scale, rotate, shift = {"light": ((0.9, 1.1), 10, 0.05), "standard": ((0.75, 1.25), 15, 0.1),
                            "strong": ((0.6, 1.4), 25, 0.15)}[strength]
    return [
        A.Affine(scale=scale, rotate=(-rotate, rotate), translate_percent=(-shift, shift),
                 interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.8),
        A.HorizontalFlip(p=0.5),
    ]


def photometric_ops(strength: str) -> list[A.BasicTransform]:
    """Photometric augmentation: brightness/contrast, colour, blur or noise, occasional grayscale."""
    if strength in ("none", "light"):
        return [A.RandomBrightnessContrast(0.15, 0.15, p=0.5)] if strength == "light" else []
    k = 1.5 if strength == "strong" else 1.0
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25 * k, contrast_limit=0.25 * k, p=0.6),
        A.HueSaturationValue(hue_shift_limit=int(10 * k), sat_shift_limit=int(20 * k), val_shift_limit=0, p=0.4),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.GaussNoise(std_range=(0.02, 0.08), p=1.0)], p=0.2),
        A.ToGray(p=0.05),
    ]


def train_transform(size: int, strength: str = "standard", normalize: bool = True,
                    seed: int | None = None, geometry: str = "letterbox", multiple: int = 32) -> A.Compose:
    """Training pipeline: the input step (`geometry`), then geometric and photometric augmentation, then
    Normalize + tensor."""
    if strength not in AUGMENTATIONS:
        raise ConfigError(f"augmentation {strength!r} unknown; expected one of {', '.join(AUGMENTATIONS)}")
    ops = input_ops(size, geometry, multiple) + geometric_ops(strength) + photometric_ops(strength)
    return A.Compose(ops + _tensor_ops(normalize), seed=seed)


def eval_transform(size: int, normalize: bool = True, geometry: str = "letterbox", multiple: int = 32) -> A.Compose:
    """Evaluation pipeline: the deterministic input step (`geometry`) only."""
    return A.Compose(input_ops(size, geometry, multiple) + _tensor_ops(normalize))


def _tensor_ops(normalize: bool) -> list[A.BasicTransform]:
    if not normalize:
        return []
    return [A.Normalize(mean=NORMALIZATION["mean"], std=NORMALIZATION["std"]), ToTensorV2()]


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


def to_photo(prob: np.ndarray, height: int, width: int, geometry: str = "letterbox") -> np.ndarray:
    """Map a probability map back to the photo's HxW: undo the padding (letterbox, rect), or resize back."""
    if geometry in ("letterbox", "rect"):
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
