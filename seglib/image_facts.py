"""Measurable attributes of a photo and its ground-truth mask, computed once per image when it is evaluated.

All are measured at the mask's resolution (the scored size): how many people, how bright the photo, the figure
and the background are, and whether the photo is grayscale. Notebook 05's failure categories are built on them.
"""

from __future__ import annotations

import cv2
import numpy as np

PERSON_SHARE = 0.02  # a mask component counts as a person when its area exceeds this share of the largest one
FACT_COLUMNS = ["mean_brightness", "figure_brightness", "background_brightness", "is_grayscale", "n_people"]


def count_people(mask: np.ndarray, share: float = PERSON_SHARE) -> int:
    """Connected components of the mask larger than `share` of the largest one."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if not m.any():
        return 0
    _, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int((areas > share * areas.max()).sum())


def image_facts(image: np.ndarray, mask: np.ndarray) -> dict:
    """FACT_COLUMNS of one image (HxWx3 uint8 RGB, or HxW gray) and its mask (HxW, 0/1) at the same size;
    brightness values are 0-1, figure/background brightness NaN when the mask is empty/full."""
    rgb = np.asarray(image)
    m = np.asarray(mask) > 0
    if rgb.shape[:2] != m.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {m.shape} differ in size")
    gray = (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb).astype(np.float32) / 255.0
    grayscale = rgb.ndim == 2 or bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    return {
        "mean_brightness": float(gray.mean()),
        "figure_brightness": float(gray[m].mean()) if m.any() else float("nan"),
        "background_brightness": float(gray[~m].mean()) if (~m).any() else float("nan"),
        "is_grayscale": grayscale,
        "n_people": count_people(m),
    }
