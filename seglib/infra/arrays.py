"""Photos and masks as arrays, in the forms the workbook uses: HxWx3 uint8 photos and HxW boolean masks."""

from __future__ import annotations

import numpy as np


def to_rgb(image) -> np.ndarray:
    """HxWx3 uint8 from a gray, RGB or RGBA array (uint8, or float in [0, 1]), or a CHW tensor/array."""
    a = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def as_mask(mask, threshold: float = 0.5) -> np.ndarray:
    """HxW bool from a bool, 0/1, 0/255 or probability mask (probabilities: >= threshold)."""
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    m = np.squeeze(m) if m.ndim == 3 else m
    if m.ndim != 2:
        raise ValueError(f"expected an HxW mask, got shape {m.shape}")
    if m.dtype == bool:
        return m
    if np.issubdtype(m.dtype, np.floating):
        return m >= (127.5 if m.size and m.max() > 1.0 else threshold)
    return m > (127 if m.size and m.max() > 1 else 0)


def check_shapes(image: np.ndarray, *masks: np.ndarray) -> None:
    """ValueError when a mask is not the image's height and width."""
    for m in masks:
        if m.shape != image.shape[:2]:
            raise ValueError(f"mask shape {m.shape} does not match image shape {image.shape[:2]}")
