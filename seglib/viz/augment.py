"""Notebook 02: the augmentation pipeline as a table, augmented samples, and the mask-alignment check."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seglib.transforms.checks import apply_transform, reseed
from seglib.viz.images import sample_grid
from seglib.viz.style import MAX_SIDE, styled
from seglib.viz.summary_tables import format_value

_TECHNICAL_ARGS = {"p", "border_mode", "fill", "fill_mask", "interpolation", "mask_interpolation", "fit_output",
                   "keep_ratio", "rotate_method", "balanced_scale", "ensure_safe_range", "brightness_by_max",
                   "num_output_channels", "area_for_downscale", "shear", "translate_px", "position"}
TINT = 0.25  # the augmented masks' overlay: light, so that colour changes stay visible


def ops_table(ops: Sequence) -> pd.DataFrame:
    """Albumentations ops as a table: name, probability of being applied, and their main settings."""
    rows = []
    for op in ops:
        children = getattr(op, "transforms", None)
        if children is not None:  # OneOf / SomeOf / nested Compose
            settings = f"{type(op).__name__}: " + ", ".join(type(c).__name__ for c in children)
        else:
            args = op.get_transform_init_args() if hasattr(op, "get_transform_init_args") else {}
            settings = "; ".join(f"{k}={format_value(v)}" for k, v in sorted(args.items())
                                 if k not in _TECHNICAL_ARGS and v is not None)
        rows.append({"op": type(op).__name__, "probability": float(op.p), "settings": settings})
    return pd.DataFrame(rows, columns=["op", "probability", "settings"])


@styled
def augmentation_grid(image: np.ndarray, mask: np.ndarray, transform, n: int = 8, ncols: int = 4, *,
                      seed: int | None = None, title: str = "") -> Figure:
    """The input pair, then `n` augmented samples of it, each with its augmented mask overlaid (light tint and
    outline, so colour changes stay visible)."""
    reseed(transform, seed)
    panels = [(image, mask, f"input {mask.shape[1]}x{mask.shape[0]}")]
    for i in range(n):
        img, m = apply_transform(transform, image, mask)
        panels.append((img, m, f"augmented #{i + 1}"))
    images, masks, titles = zip(*panels, strict=True)
    return sample_grid(images, masks, titles, ncols=ncols, max_side=MAX_SIDE, suptitle=title, alpha=TINT)


def geometry_grid(image: np.ndarray, mask: np.ndarray, size: int, multiple: int = 32, *,
                  max_side: int | None = MAX_SIDE) -> Figure:
    """The photo as each `geometry` makes it a network input (letterbox, resize, rect), titled with the input's
    HxW and the share of it that is padding."""
    from seglib.settings import GEOMETRIES
    from seglib.transforms.pipelines import eval_transform

    panels = [(image, mask, f"photo {mask.shape[1]}x{mask.shape[0]}")]
    for geometry in GEOMETRIES:
        transform = eval_transform(size, normalize=False, geometry=geometry, multiple=multiple)
        out = transform(image=image, mask=mask)
        h, w = out["mask"].shape
        photo = transform(image=np.full_like(image, 255))["image"][..., 0]  # white where the photo is, black padding
        padding = float((photo == 0).mean())
        panels.append((out["image"], out["mask"], f"{geometry}: {w}x{h}, {padding:.0%} padding"))
    images, masks, titles = zip(*panels, strict=True)
    return sample_grid(images, masks, titles, ncols=len(panels), max_side=max_side,
                       suptitle=f"network input at {size} px, by geometry")


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
                       ncols: int = 4, *, seed: int | None = None, title: str = "") -> Figure:
    """The input pair, then each transform of `ops` ({name: transform}) applied on its own, mask overlaid."""
    panels = [(image, mask, "input")]
    for name, transform in ops.items():
        reseed(transform, seed)
        for k in range(n_per_op):
            img, m = apply_transform(transform, image, mask)
            panels.append((img, m, name if n_per_op == 1 else f"{name} #{k + 1}"))
    images, masks, titles = zip(*panels, strict=True)
    return sample_grid(images, masks, titles, ncols=ncols, max_side=MAX_SIDE, suptitle=title, alpha=TINT)


