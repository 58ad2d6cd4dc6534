"""Notebook 02: the augmentation pipeline as a table, augmented samples, and the mask-alignment check."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seglib.viz.images import _check_shapes, as_mask, sample_grid, to_rgb
from seglib.viz.style import MAX_SIDE, styled

ALIGNED_SHARE = 0.95  # binary_alignment_check: agreement (away from the mask edge) needed to count as aligned


_TECHNICAL_ARGS = {"p", "border_mode", "fill", "fill_mask", "interpolation", "mask_interpolation", "fit_output",
                   "keep_ratio", "rotate_method", "balanced_scale", "ensure_safe_range", "brightness_by_max",
                   "num_output_channels", "area_for_downscale", "shear", "translate_px", "position"}


def ops_table(ops: Sequence) -> pd.DataFrame:
    """Albumentations ops as a table: name, probability of being applied, and their main settings."""
    rows = []
    for op in ops:
        children = getattr(op, "transforms", None)
        if children is not None:  # OneOf / SomeOf / nested Compose
            settings = f"{type(op).__name__}: " + ", ".join(type(c).__name__ for c in children)
        else:
            args = op.get_transform_init_args() if hasattr(op, "get_transform_init_args") else {}
            settings = "; ".join(f"{k}={_fmt(v)}" for k, v in sorted(args.items())
                                 if k not in _TECHNICAL_ARGS and v is not None)
        rows.append({"op": type(op).__name__, "probability": float(op.p), "settings": settings})
    return pd.DataFrame(rows, columns=["op", "probability", "settings"])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


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
        from seglib.transforms import denormalize

        img = denormalize(img)
    return to_rgb(img), np.squeeze(np.asarray(m)).astype(np.uint8)


def _reseed(transform, seed: int | None) -> None:
    if seed is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


@styled
def augmentation_grid(image: np.ndarray, mask: np.ndarray, transform, n: int = 8, ncols: int = 4, *,
                      seed: int | None = None, max_side: int | None = MAX_SIDE, title: str = "",
                      alpha: float = 0.25) -> Figure:
    """The input pair, then `n` augmented samples of it, each with its augmented mask overlaid (light tint and
    outline, so colour changes stay visible)."""
    _reseed(transform, seed)
    panels = [(image, mask, f"input {mask.shape[1]}x{mask.shape[0]}")]
    for i in range(n):
        img, m = apply_transform(transform, image, mask)
        panels.append((img, m, f"augmented #{i + 1}"))
    images, masks, titles = zip(*panels, strict=True)
    return sample_grid(images, masks, titles, ncols=ncols, max_side=max_side, suptitle=title, alpha=alpha)


def named_ops(ops: Sequence, seed: int | None = None, always: bool = True) -> dict:
    """{name: Compose([op])} for showing transforms one at a time.

    OneOf/SomeOf groups are expanded into their members; with `always` each op is copied with p=1, so every
    sample shows its effect (the training pipeline applies them with their own probabilities).
    """
    import copy

    import albumentations as A

    flat = []
    for op in ops:
        children = getattr(op, "transforms", None)
        flat.extend(children if isinstance(op, (A.OneOf, A.SomeOf)) and children else [op])
    named: dict = {}
    for op in flat:
        op = copy.deepcopy(op)
        if always:
            op.p = 1.0
        name = type(op).__name__
        key, k = name, 2
        while key in named:
            key, k = f"{name} ({k})", k + 1
        named[key] = A.Compose([op], seed=seed)
    return named


@styled
def per_transform_grid(image: np.ndarray, mask: np.ndarray, ops: Mapping[str, Callable], n_per_op: int = 1,
                       ncols: int = 4, *, seed: int | None = None, max_side: int | None = MAX_SIDE,
                       title: str = "", alpha: float = 0.25) -> Figure:
    """The input pair, then each transform of `ops` ({name: transform}) applied on its own, mask overlaid."""
    panels = [(image, mask, "input")]
    for name, transform in ops.items():
        _reseed(transform, seed)
        for k in range(n_per_op):
            img, m = apply_transform(transform, image, mask)
            panels.append((img, m, name if n_per_op == 1 else f"{name} #{k + 1}"))
    images, masks, titles = zip(*panels, strict=True)
    return sample_grid(images, masks, titles, ncols=ncols, max_side=max_side, suptitle=title, alpha=alpha)


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
    _check_shapes(to_rgb(image), m)
    probe = check_image(m)
    _reseed(transform, seed)
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
