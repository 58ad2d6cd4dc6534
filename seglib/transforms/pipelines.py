"""Albumentations pipelines: seeded training augmentation and the deterministic photo -> network input step
(`geometry`: square letterbox, plain resize, or rectangular `rect`) for evaluation, and its inverse for predictions.

(seglib/__init__.py, imported before this module, sets NO_ALBUMENTATIONS_UPDATE=1 so albumentations does not
check for updates over the network.)
"""

from __future__ import annotations

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from seglib.geometry import NORMALIZATION
from seglib.infra.errors import ConfigError
from seglib.settings import (
    AUGMENTATIONS,
    GEOMETRIES,
    LETTERBOX,
    LIGHT,
    NO_AUGMENTATION,
    RECT,
    RESIZE,
    STANDARD,
    STRONG,
    ZOOM,
)

# each augmentation level's Affine: scale range, largest rotation (degrees), largest shift (a fraction of the side)
AFFINE = {LIGHT: ((0.9, 1.1), 10, 0.05), STANDARD: ((0.75, 1.25), 15, 0.1), STRONG: ((0.6, 1.4), 25, 0.15)}


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


def input_ops(size: int, geometry: str = LETTERBOX, multiple: int = 32) -> list[A.BasicTransform]:
    """The photo -> network input step of a `geometry`: letterbox or resize (square), rect (HxW multiples of
    `multiple`)."""
    if geometry not in GEOMETRIES:
        raise ConfigError(f"geometry {geometry!r} unknown; expected one of {', '.join(GEOMETRIES)}")
    if geometry == RECT:
        return rect_ops(size, multiple)
    return letterbox_ops(size) if geometry == LETTERBOX else resize_ops(size)


def describe_input(size: int, geometry: str = LETTERBOX) -> str:
    """How a photo becomes the network input, in words (model cards, the bench)."""
    return {LETTERBOX: f"{size}x{size} px, letterboxed (aspect kept, padded to the square)",
            RESIZE: f"{size}x{size} px, stretched (as MediaPipe does)",
            RECT: f"longest side {size} px, aspect kept (padded to a multiple of the network's stride)"}[geometry]


def geometric_ops(strength: str) -> list[A.BasicTransform]:
    """Geometric augmentation: scale, rotation, shift (Affine) and horizontal flip."""
    if strength == NO_AUGMENTATION:
        return []
    scale, rotate, shift = AFFINE[STANDARD if strength == ZOOM else strength]
    return [
        A.Affine(scale=scale, rotate=(-rotate, rotate), translate_percent=(-shift, shift),
                 interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.8),
        A.HorizontalFlip(p=0.5),
    ]


def photometric_ops(strength: str) -> list[A.BasicTransform]:
    """Photometric augmentation: brightness/contrast, colour, blur or noise, occasional grayscale."""
    if strength in (NO_AUGMENTATION, LIGHT):
        return [A.RandomBrightnessContrast(0.15, 0.15, p=0.5)] if strength == LIGHT else []
    # zoom: the standard photometric ops
    k = 1.5 if strength == STRONG else 1.0
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25 * k, contrast_limit=0.25 * k, p=0.6),
        A.HueSaturationValue(hue_shift_limit=int(10 * k), sat_shift_limit=int(20 * k), val_shift_limit=0, p=0.4),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.GaussNoise(std_range=(0.02, 0.08), p=1.0)], p=0.2),
        A.ToGray(p=0.05),
    ]


def train_transform(size: int, strength: str = STANDARD, normalize: bool = True,
                    seed: int | None = None, geometry: str = LETTERBOX, multiple: int = 32,
                    composite: float = 0.0, backgrounds=None) -> A.Compose:
    """Training pipeline: with probability `composite` the figure pasted onto another background
    (`seglib.transforms.compositing`; `backgrounds` a BackgroundPool, else synthetic ones), the figure zoomed out or
    in (`zoom` only: `seglib.transforms.zoom`, at the photo's own resolution), then the input step (`geometry`),
    geometric and photometric augmentation, Normalize + tensor."""
    if strength not in AUGMENTATIONS:
        raise ConfigError(f"augmentation {strength!r} unknown; expected one of {', '.join(AUGMENTATIONS)}")
    ops = compositing_ops(composite, backgrounds) + zoom_ops(strength) + input_ops(size, geometry, multiple)
    ops += geometric_ops(strength)
    ops += photometric_ops(strength)
    return A.Compose(ops + _tensor_ops(normalize), seed=seed)


def compositing_ops(probability: float, backgrounds=None) -> list[A.BasicTransform]:
    """Copy-paste onto another background with `probability` (none at 0), at the photo's own resolution."""
    if probability <= 0:
        return []
    from seglib.transforms.compositing import PasteOnBackground

    return [PasteOnBackground(backgrounds, p=probability)]


def zoom_ops(strength: str) -> list[A.BasicTransform]:
    """The scale augmentation of `zoom` (none for the other levels)."""
    if strength != ZOOM:
        return []
    from seglib.transforms.zoom import ZoomFigure

    return [ZoomFigure()]


def eval_transform(size: int, normalize: bool = True, geometry: str = LETTERBOX, multiple: int = 32) -> A.Compose:
    """Evaluation pipeline: the deterministic input step (`geometry`) only."""
    return A.Compose(input_ops(size, geometry, multiple) + _tensor_ops(normalize))


def _tensor_ops(normalize: bool) -> list[A.BasicTransform]:
    if not normalize:
        return []
    return [A.Normalize(mean=NORMALIZATION["mean"], std=NORMALIZATION["std"]), ToTensorV2()]
