"""Checks that an augmentation pipeline keeps each mask binary and aligned with its image (notebook 02)."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from seglib.infra.arrays import as_mask, check_shapes, to_rgb

ALIGNED_SHARE = 0.95  # binary_alignment_check: agreement (away from the mask edge) needed to count as aligned


def apply_transform(transform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run an albumentations-style transform; return a displayable HxWx3 uint8 image and an HxW uint8 mask.

    A normalised CHW tensor output (a pipeline ending in Normalize + ToTensorV2) is un-normalised.
    """
    out = transform(image=image, mask=mask)
    img, m = out["image"], out["mask"]
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    if hasattr(m, "detach"):
        m = m.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[2] != 3 and np.issubdtype(img.dtype, np.floating) \
            and img.min() < 0:
        from seglib.geometry import denormalize

        img = denormalize(img)
    return to_rgb(img), np.squeeze(np.asarray(m)).astype(np.uint8)


def reseed(transform, seed: int | None) -> None:
    if seed is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def check_image(mask: np.ndarray, low: int = 0, high: int = 255) -> np.ndarray:
    """A two-tone HxWx3 uint8 image drawn from the mask: person pixels `high`, the rest `low`."""
    m = as_mask(mask)
    return np.repeat(np.where(m, high, low).astype(np.uint8)[:, :, None], 3, axis=2)


def binary_alignment_check(image: np.ndarray, mask: np.ndarray, transform, n: int = 16, *,
                           seed: int | None = None, edge: int = 2) -> pd.DataFrame:
    """Per augmented sample: is the mask still binary, and does it still line up with the image?

    The photo is replaced by `check_image(mask)` (person white, background black, the size of `image`),
    which goes through `transform` together with the mask. Photometric ops shift brightness and colour but
    keep white above black, so after a 3x3 median filter (against noise) Otsu's threshold recovers the white
    region. Away from the mask's edge (`edge` pixels each side, where resampling legitimately blurs), every
    mask pixel should be white and every background pixel black; a mask moved differently from its image
    breaks that. Columns: sample, mask_values, binary, fg_fraction, mask_on_white (share of the mask's
    interior on white), background_on_black (share of the background's interior on black), aligned (both
    >= ALIGNED_SHARE; a side with no interior left counts as agreeing).
    """
    m = as_mask(mask)
    check_shapes(to_rgb(image), m)
    probe = check_image(m)
    reseed(transform, seed)
    kernel = np.ones((3, 3), np.uint8)
    rows = []
    for i in range(n):
        out_img, out_mask = apply_transform(transform, probe, m.astype(np.uint8))
        values = np.unique(out_mask)
        binary = bool(set(values.tolist()) <= {0, 1})
        fg = (out_mask > 0).astype(np.uint8)
        gray = cv2.medianBlur(cv2.cvtColor(out_img, cv2.COLOR_RGB2GRAY), 3)
        if gray.min() == gray.max():  # one tone left: Otsu has nothing to split
            white = np.full(gray.shape, gray.max() >= 128)
        else:
            white = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] > 0
        inside = cv2.erode(fg, kernel, iterations=edge, borderType=cv2.BORDER_REPLICATE) > 0
        outside = cv2.erode(1 - fg, kernel, iterations=edge, borderType=cv2.BORDER_REPLICATE) > 0
        on_white = float(white[inside].mean()) if inside.any() else 1.0
        on_black = float((~white[outside]).mean()) if outside.any() else 1.0
        rows.append({"sample": i + 1, "mask_values": ",".join(str(int(v)) for v in values), "binary": binary,
                     "fg_fraction": round(float(fg.mean()), 4), "mask_on_white": round(on_white, 4),
                     "background_on_black": round(on_black, 4),
                     "aligned": min(on_white, on_black) >= ALIGNED_SHARE})
    return pd.DataFrame(rows)


def alignment_verdict(check: pd.DataFrame) -> str:
    """One sentence summarising a `binary_alignment_check` table."""
    n = len(check)
    n_binary, n_aligned = int(check["binary"].sum()), int(check["aligned"].sum())
    lowest = min(check["mask_on_white"].min(), check["background_on_black"].min()) if n else float("nan")
    if n_binary == n and n_aligned == n:
        return (f"All {n} augmented masks are binary (values 0/1) and aligned with their image: away from the "
                f"mask edge, at least {lowest:.1%} of mask pixels lie on the check image's white person and of "
                f"background pixels on its black background.")
    return (f"WARNING: {n - n_binary} of {n} augmented masks are not binary and {n - n_aligned} are misaligned "
            f"(lowest agreement {lowest:.1%}, expected >= {ALIGNED_SHARE:.0%}).")
