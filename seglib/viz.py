"""Figures and display tables for the notebooks and reports.

Every plotting function takes arrays or DataFrames and returns a `matplotlib.figure.Figure`; nothing is
shown, saved or registered with pyplot, so the functions are safe in scripts, tests (Agg) and notebooks
(displaying the returned figure is enough, and it is displayed once). Figures share one style (`STYLE`,
applied per figure through `rc_context`, never globally; seaborn is used axes-level only, without
`set_theme`). Large photos are downscaled for display (longest side `MAX_SIDE`) to keep HTML reports small.

Colour conventions: ground truth green, prediction orange; in error overlays true positives are lightly
tinted green, false positives magenta and false negatives cyan (`add_error_legend` explains them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

MAX_SIDE = 256  # longest side of photos in figures
DPI = 90
PANEL = 2.2  # inches per image panel

TRUTH_COLOR = (0, 255, 0)
PRED_COLOR = (255, 140, 0)
TP_COLOR = (0, 200, 0)
FP_COLOR = (255, 0, 255)
FN_COLOR = (0, 255, 255)
SPLIT_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}
RELATION_COLORS = {"same": "#4C72B0", "scaled": "#DD8452", "mismatch": "#C44E52"}

STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.interpolation": "nearest",
}

ALIGNED_SHARE = 0.95  # binary_alignment_check: agreement (away from the mask edge) needed to count as aligned


def styled(func: Callable) -> Callable:
    """Build the figure under the shared style (rc_context: nothing leaks into the caller's settings)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None, height: float | None = None,
               squeeze: bool = False, **kwargs) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure not managed by pyplot, and its axes (a 2-D array unless squeeze)."""
    fig = Figure(figsize=(width or PANEL * ncols, height or PANEL * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)
    return fig, axes


# ----------------------------------------------------------------------------------------------- arrays


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


def downscale(image: np.ndarray, max_side: int | None = MAX_SIDE, *, is_mask: bool = False) -> np.ndarray:
    """Shrink so the longest side is at most max_side (area filter for photos, nearest for masks)."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if is_mask:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(image.dtype)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _check_shapes(image: np.ndarray, *masks: np.ndarray) -> None:
    for m in masks:
        if m.shape != image.shape[:2]:
            raise ValueError(f"mask shape {m.shape} does not match image shape {image.shape[:2]}")


def _blend(out: np.ndarray, base: np.ndarray, where: np.ndarray, color, alpha: float) -> None:
    if where.any():
        col = np.asarray(color, np.float32)
        out[where] = np.clip(base[where].astype(np.float32) * (1 - alpha) + col * alpha + 0.5, 0, 255).astype(np.uint8)


def overlay(rgb, mask, color=TRUTH_COLOR, alpha: float = 0.45, outline: bool = True,
            thickness: int = 1) -> np.ndarray:
    """The photo with the mask's pixels tinted by `color` (and its inner edge drawn solid); other pixels unchanged."""
    image = to_rgb(rgb)
    m = as_mask(mask)
    _check_shapes(image, m)
    out = image.copy()
    _blend(out, image, m, color, alpha)
    if outline and m.any():
        inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, thickness)) > 0
        out[m & ~inner] = np.asarray(color, np.uint8)
    return out


def error_overlay(rgb, pred, truth, tp_alpha: float = 0.3, alpha: float = 0.75, threshold: float = 0.5) -> np.ndarray:
    """Prediction errors on the photo: TP lightly tinted green, FP magenta, FN cyan; TN pixels unchanged."""
    image = to_rgb(rgb)
    p, t = as_mask(pred, threshold), as_mask(truth)
    _check_shapes(image, p, t)
    out = image.copy()
    _blend(out, image, p & t, TP_COLOR, tp_alpha)
    _blend(out, image, p & ~t, FP_COLOR, alpha)
    _blend(out, image, ~p & t, FN_COLOR, alpha)
    return out


def error_legend_handles() -> list[Patch]:
    """Legend entries for `error_overlay` colours."""
    return [
        Patch(color=np.asarray(TP_COLOR) / 255, alpha=0.5, label="true positive (person, found)"),
        Patch(color=np.asarray(FP_COLOR) / 255, label="false positive (background called person)"),
        Patch(color=np.asarray(FN_COLOR) / 255, label="false negative (person missed)"),
    ]


def add_error_legend(target: Figure | Axes, **kwargs) -> None:
    """Add the error-colour legend below a figure (or inside an axes)."""
    if isinstance(target, Figure):
        kwargs = {"loc": "outside lower center", "ncols": 3, "frameon": False, **kwargs}
    target.legend(handles=error_legend_handles(), **kwargs)


def _image_axis(ax, image: np.ndarray, title: str = "") -> None:
    ax.imshow(image, interpolation="antialiased")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def _grid_shape(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _display_pair(image, mask, max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    img = to_rgb(image)
    if mask is None:
        return downscale(img, max_side), None
    m = as_mask(mask)
    _check_shapes(img, m)
    return downscale(img, max_side), downscale(m, max_side, is_mask=True)


# ----------------------------------------------------------------------------------------------- samples


@styled
def sample_grid(images: Sequence, masks: Sequence | None = None, titles: Sequence[str] | None = None,
                ncols: int = 4, *, color=TRUTH_COLOR, alpha: float = 0.45, max_side: int | None = MAX_SIDE,
                suptitle: str = "") -> Figure:
    """Photos in a grid, each with its mask overlaid (a None mask, or masks=None, shows the photo alone)."""
    n = len(images)
    if n == 0:
        raise ValueError("sample_grid: no images")
    masks = list(masks) if masks is not None else [None] * n
    titles = list(titles) if titles is not None else [""] * n
    if len(masks) != n or len(titles) != n:
        raise ValueError(f"sample_grid: {n} images but {len(masks)} masks and {len(titles)} titles")
    nrows, ncols = _grid_shape(n, ncols)
    fig, axes = new_figure(nrows, ncols)
    for ax, image, mask, title in zip(axes.ravel(), images, masks, titles, strict=False):
        img, m = _display_pair(image, mask, max_side)
        _image_axis(ax, img if m is None else overlay(img, m, color=color, alpha=alpha), title)
    _hide_unused(axes, n)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


@styled
def prediction_grid(images: Sequence, truths: Sequence, probs_or_preds: Sequence,
                    titles: Sequence[str] | None = None, threshold: float = 0.5, *,
                    max_side: int | None = MAX_SIDE) -> Figure:
    """One row per photo: image | ground truth | prediction | errors (TP/FP/FN), with the IoU per row.

    Predictions may be probabilities (thresholded at `threshold`) or 0/1 masks, at the truth's size.
    """
    from seglib.metrics import iou

    n = len(images)
    if n == 0:
        raise ValueError("prediction_grid: no images")
    if len(truths) != n or len(probs_or_preds) != n:
        raise ValueError(f"prediction_grid: {n} images, {len(truths)} truths, {len(probs_or_preds)} predictions")
    titles = list(titles) if titles is not None else [f"#{i}" for i in range(n)]
    fig, axes = new_figure(n, 4, height=PANEL * n + 0.4)
    for row, (image, truth, pred, title) in enumerate(zip(images, truths, probs_or_preds, titles, strict=False)):
        img = to_rgb(image)
        t, p = as_mask(truth), as_mask(pred, threshold)
        _check_shapes(img, t, p)
        score = iou(p, t)
        small, ts, ps = downscale(img, max_side), downscale(t, max_side, is_mask=True), downscale(p, max_side,
                                                                                                 is_mask=True)
        panels = [(small, f"{title}"), (overlay(small, ts, TRUTH_COLOR), "ground truth"),
                  (overlay(small, ps, PRED_COLOR), f"prediction (t={threshold:g})"),
                  (error_overlay(small, ps, ts), f"errors: IoU {score:.3f}")]
        for ax, (panel, name) in zip(axes[row], panels, strict=True):
            _image_axis(ax, panel, name)
    add_error_legend(fig)
    return fig


# ----------------------------------------------------------------------------------------------- data set


@styled
def size_scatter(table: pd.DataFrame) -> Figure:
    """Image sizes (width vs height, coloured by how the mask's size relates) and the aspect-ratio histogram.

    `table` is `check_dataset(...).table` (image_width, image_height, aspect_ratio, size_relation).
    """
    import seaborn as sns

    fig, axes = new_figure(1, 2, width=9.5, height=3.6, squeeze=True)
    ax = axes[0]
    hue = "size_relation" if "size_relation" in table else None
    palette = {k: v for k, v in RELATION_COLORS.items() if hue and k in set(table[hue])} or None
    sns.scatterplot(data=table, x="image_width", y="image_height", hue=hue, palette=palette, ax=ax, s=18,
                    alpha=0.7, edgecolor="none")
    top = float(max(table["image_width"].max(), table["image_height"].max())) * 1.05
    ax.plot([0, top], [0, top], ls="--", lw=0.8, color="0.5", label="square (w = h)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("image width (px)")
    ax.set_ylabel("image height (px)")
    ax.set_title(f"{len(table)} images: stored size")
    ax.legend(title="mask vs image size" if hue else None, loc="upper right")
    ax = axes[1]
    sns.histplot(data=table, x="aspect_ratio", hue=hue, palette=palette, ax=ax, bins=30, multiple="stack",
                 edgecolor="white", linewidth=0.4)
    ax.axvline(1.0, ls="--", lw=0.8, color="0.5")
    ax.set_xlabel("aspect ratio (width / height); < 1 portrait, > 1 landscape")
    ax.set_ylabel("images")
    ax.set_title("aspect ratios")
    return fig


def _split_frame(data) -> tuple[pd.DataFrame, str | None]:
    if isinstance(data, Mapping):
        parts = [pd.DataFrame({"fg_fraction": df["fg_fraction"].to_numpy(), "split": name})
                 for name, df in data.items()]
        return pd.concat(parts, ignore_index=True), "split"
    if "fg_fraction" not in data:
        raise ValueError("fg_fraction_hist: the table has no fg_fraction column")
    return data, ("split" if "split" in data else None)


@styled
def fg_fraction_hist(table_or_split_tables, bins: int = 20) -> Figure:
    """Distribution of the foreground fraction (share of mask pixels that are person).

    Takes the data check table, a table with a `split` column, or {split name: split table}; splits are
    drawn as overlaid percentage histograms (so splits of different sizes compare) with their medians.
    """
    import seaborn as sns

    df, hue = _split_frame(table_or_split_tables)
    fig, axes = new_figure(1, 1, width=6.0, height=3.2, squeeze=True)
    ax = axes
    edges = np.linspace(0, 1, bins + 1)
    if hue:
        names = list(dict.fromkeys(df[hue]))
        palette = {n: SPLIT_COLORS.get(n, f"C{i}") for i, n in enumerate(names)}
        sns.histplot(data=df, x="fg_fraction", hue=hue, hue_order=names, palette=palette, bins=edges,
                     stat="percent", common_norm=False, element="step", alpha=0.15, ax=ax)
        for name in names:
            ax.axvline(df.loc[df[hue] == name, "fg_fraction"].median(), color=palette[name], ls="--", lw=1)
        ax.set_ylabel("% of the split's images")
        ax.set_title("foreground fraction per split (dashed: medians)")
    else:
        sns.histplot(data=df, x="fg_fraction", bins=edges, ax=ax, color=SPLIT_COLORS["train"],
                     edgecolor="white", linewidth=0.4)
        ax.axvline(df["fg_fraction"].median(), color="0.3", ls="--", lw=1,
                   label=f"median {df['fg_fraction'].median():.2f}")
        ax.legend()
        ax.set_ylabel("images")
        ax.set_title(f"foreground fraction ({len(df)} masks)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("foreground fraction (share of the mask's pixels that are person)")
    return fig


def size_relation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs per mask/image size relation (same, scaled, mismatch) with the image/mask scale factors."""
    grouped = table.groupby("size_relation")
    out = pd.DataFrame({
        "pairs": grouped.size(),
        "share": grouped.size() / len(table),
        "scale_min": grouped["scale"].min(),
        "scale_median": grouped["scale"].median(),
        "scale_max": grouped["scale"].max(),
    })
    out.index.name = "size_relation"
    return out.round(3)


def colour_mode_table(table: pd.DataFrame, n_ids: int = 5) -> pd.DataFrame:
    """Pairs per (image mode, mask mode), with a few example ids."""
    rows = []
    for (img_mode, mask_mode), part in table.groupby(["image_mode", "mask_mode"]):
        ids = part["id"].astype(str).tolist()
        rows.append({"image_mode": img_mode, "mask_mode": mask_mode, "pairs": len(part),
                     "example_ids": ", ".join(ids[:n_ids]) + (", ..." if len(ids) > n_ids else "")})
    return pd.DataFrame(rows).sort_values("pairs", ascending=False).reset_index(drop=True)


def split_summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`split_summary()` for display: split as index, each split's share of the images, fg fractions rounded."""
    out = summary.set_index("split").copy()
    out.insert(1, "share", (out["n_images"] / out["n_images"].sum()).round(3))
    fg = [c for c in out.columns if c.startswith("fg_")]
    out[fg] = out[fg].round(3)
    return out


def key_value_table(mapping: Mapping, key: str = "item", value: str = "value") -> pd.DataFrame:
    """A dict as a two-column table (values as text, so mixed types display cleanly)."""
    return pd.DataFrame({key: list(mapping), value: [_fmt(v) for v in mapping.values()]}).set_index(key)


def config_table(cfg, base=None, base_name: str = "profile_default") -> pd.DataFrame:
    """A TrainConfig (or dict) as a table; with `base` (e.g. the profile's defaults) a column marks changes."""
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    out = pd.DataFrame({"setting": list(values), "value": [_fmt(v) for v in values.values()]})
    if base is not None:
        defaults = base.to_dict() if hasattr(base, "to_dict") else dict(base)
        out[base_name] = [_fmt(defaults.get(k, "")) for k in values]
        out["changed"] = ["yes" if k in defaults and defaults[k] != v else "" for k, v in values.items()]
    return out.set_index("setting")


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


# ----------------------------------------------------------------------------------------------- augmentation


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


# ----------------------------------------------------------------------------------------------- training


@styled
def training_curves(history: pd.DataFrame | str | Path) -> Figure:
    """Loss (train and val), validation IoU (best epoch marked) and learning rate per epoch.

    `history` is a run's history.csv (path or DataFrame: epoch, train_loss, val_loss, val_iou, lr[, best]).
    """
    df = pd.read_csv(history) if isinstance(history, (str, Path)) else history
    if df.empty:
        raise ValueError("training_curves: the history is empty (no finished epoch)")
    marker = "o" if len(df) <= 30 else None
    fig, axes = new_figure(1, 3, width=11.0, height=3.0, squeeze=True)
    ax = axes[0]
    ax.plot(df["epoch"], df["train_loss"], marker=marker, ms=3, label="train")
    ax.plot(df["epoch"], df["val_loss"], marker=marker, ms=3, label="validation")
    ax.set_title("loss (Dice + BCE)")
    ax.set_xlabel("epoch")
    ax.legend()
    ax = axes[1]
    ax.plot(df["epoch"], df["val_iou"], marker=marker, ms=3, color="C2")
    best = df.loc[df["val_iou"].idxmax()]
    ax.scatter([best["epoch"]], [best["val_iou"]], marker="*", s=120, color="C3", zorder=3,
               label=f"best {best['val_iou']:.3f} (epoch {int(best['epoch'])})")
    ax.set_title("validation IoU (mean per image)")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax = axes[2]
    ax.plot(df["epoch"], df["lr"], marker=marker, ms=3, color="C4")
    ax.set_title("learning rate (end of epoch)")
    ax.set_xlabel("epoch")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes:
        if len(df) < 10:
            ax.set_xticks(df["epoch"].tolist())
    return fig


# ----------------------------------------------------------------------------------------------- evaluation

BAND_COLOR = TRUTH_COLOR  # ground-truth boundary band in `boundary_overlay`
CONTOUR_COLOR = PRED_COLOR  # predicted outline


def _boxplot(**kwargs) -> None:
    """seaborn.boxplot without the deprecation warning seaborn 0.13 triggers in matplotlib >= 3.11 (`vert`)."""
    import warnings

    import seaborn as sns

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*vert: bool was deprecated", category=DeprecationWarning)
        sns.boxplot(**kwargs)


def _split_frames(per_image) -> dict[str, pd.DataFrame]:
    if isinstance(per_image, Mapping):
        return {str(name): df for name, df in per_image.items()}
    return {"": per_image}


def _long_by_split(per_image) -> pd.DataFrame:
    frames = _split_frames(per_image)
    parts = [df.assign(split=name) for name, df in frames.items() if len(df)]
    if not parts:
        raise ValueError("no per-image rows")
    return pd.concat(parts, ignore_index=True)


def _split_palette(names) -> dict:
    return {n: SPLIT_COLORS.get(n, f"C{i}") for i, n in enumerate(names)}


def headline_comparison(tables: Mapping[str, pd.DataFrame], digits: int = 3) -> pd.DataFrame:
    """Headline tables of several splits side by side ({split: `evaluate.headline_table`}), for display.

    Rows: model and baselines; columns (split, measure): mean IoU, its 95% bootstrap CI, median, pooled IoU,
    mean Dice, mean boundary IoU.
    """
    parts = {}
    for split, t in tables.items():
        parts[split] = pd.DataFrame({
            "mean IoU": t["mean_iou"].round(digits),
            "95% CI": [f"{lo:.{digits}f}-{hi:.{digits}f}" for lo, hi in zip(t["ci95_low"], t["ci95_high"],
                                                                            strict=True)],
            "median IoU": t["median_iou"].round(digits),
            "pooled IoU": t["pooled_iou"].round(digits),
            "Dice": t["mean_dice"].round(digits),
            "boundary IoU": t["mean_boundary_iou"].round(digits),
        }, index=t.index)
    return pd.concat(parts, axis=1, names=["split", "measure"])


@styled
def iou_distribution(per_image, bins: int = 20) -> Figure:
    """Per-image IoU per split ({split: per_image table}, or one table): histogram (percent of each split's
    images) and box plot with every image as a dot."""
    import seaborn as sns

    df = _long_by_split(per_image)
    names = list(dict.fromkeys(df["split"]))
    palette = _split_palette(names)
    fig, axes = new_figure(1, 2, width=9.5, height=3.2, squeeze=True)
    ax = axes[0]
    sns.histplot(data=df, x="iou", hue="split", hue_order=names, palette=palette, bins=np.linspace(0, 1, bins + 1),
                 stat="percent", common_norm=False, element="step", alpha=0.15, ax=ax,
                 legend=len(names) > 1)
    for name in names:
        ax.axvline(df.loc[df["split"] == name, "iou"].mean(), color=palette[name], ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU per image")
    ax.set_ylabel("% of the split's images")
    ax.set_title("IoU distribution (dashed: means)")
    ax = axes[1]
    _boxplot(data=df, x="iou", y="split", hue="split", order=names, hue_order=names, palette=palette, ax=ax,
             showfliers=False, width=0.5, boxprops={"alpha": 0.35}, legend=False)
    sns.stripplot(data=df, x="iou", y="split", hue="split", order=names, hue_order=names, palette=palette,
                  ax=ax, size=3.5, jitter=0.15, edgecolor="0.2", linewidth=0.3, legend=False)
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU per image")
    ax.set_ylabel("")
    ax.set_yticks(range(len(names)), [f"{n} (n={int((df['split'] == n).sum())})" for n in names])
    ax.set_title("every image (box: quartiles and median)")
    return fig


@styled
def threshold_sweep_plot(sweep: pd.DataFrame, chosen: float) -> Figure:
    """Mean per-image IoU and pooled IoU against the probability threshold (`threshold_sweep.csv` of val),
    with the chosen threshold marked."""
    if sweep.empty:
        raise ValueError("threshold_sweep_plot: the sweep is empty")
    fig, ax = new_figure(1, 1, width=5.8, height=3.2, squeeze=True)
    ax.plot(sweep["threshold"], sweep["mean_iou"], marker="o", ms=4, label="mean IoU per image (chooses)")
    if "pooled_iou" in sweep:
        ax.plot(sweep["threshold"], sweep["pooled_iou"], marker="s", ms=3, ls="--", color="C7",
                label="pooled IoU (all pixels)")
    at = sweep.loc[(sweep["threshold"] - chosen).abs().idxmin()]
    ax.axvline(chosen, color="C3", lw=1, ls=":")
    ax.scatter([chosen], [at["mean_iou"]], marker="*", s=160, color="C3", zorder=3,
               label=f"chosen t = {chosen:g} (mean IoU {at['mean_iou']:.3f})")
    values = sweep[[c for c in ("mean_iou", "pooled_iou") if c in sweep]].to_numpy()
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high - low < 0.1:  # a span of at least 0.1 IoU, so a flat curve looks flat
        mid = (low + high) / 2
        ax.set_ylim(max(0.0, mid - 0.06), min(1.0, mid + 0.06))
    ax.set_xlabel("probability threshold (pixel is person when p >= t)")
    ax.set_ylabel("IoU on val")
    ax.set_title("threshold sweep on the validation split")
    ax.legend(loc="best")
    return fig


@styled
def iou_vs_covariates(per_image) -> Figure:
    """IoU per image against the true foreground fraction (with the all-foreground baseline, IoU = fraction)
    and against the image's longest side at the scored (mask) resolution; one colour per split."""
    import seaborn as sns

    df = _long_by_split(per_image)
    df = df.assign(longest_side=df[["height", "width"]].max(axis=1))
    names = list(dict.fromkeys(df["split"]))
    hue = "split" if len(names) > 1 or names[0] else None
    palette = _split_palette(names) if hue else None
    fig, axes = new_figure(1, 2, width=9.5, height=3.4, squeeze=True)
    ax = axes[0]
    sns.scatterplot(data=df, x="fg_fraction", y="iou", hue=hue, hue_order=names if hue else None, palette=palette,
                    ax=ax, s=22, alpha=0.8, edgecolor="0.2", linewidth=0.3)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.5", label="all-foreground baseline")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("true foreground fraction (share of the picture that is person)")
    ax.set_ylabel("IoU")
    ax.set_title("IoU vs figure size")
    ax.legend(loc="lower right")
    ax = axes[1]
    sns.scatterplot(data=df, x="longest_side", y="iou", hue=hue, hue_order=names if hue else None,
                    palette=palette, ax=ax, s=22, alpha=0.8, edgecolor="0.2", linewidth=0.3, legend=False)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("longest side at mask resolution (px)")
    ax.set_ylabel("IoU")
    ax.set_title("IoU vs image size")
    return fig


def boundary_overlay(rgb, pred, truth, *, dilation_ratio: float = 0.02, max_side: int | None = MAX_SIDE,
                     alpha: float = 0.55, threshold: float = 0.5) -> np.ndarray:
    """The photo (downscaled) with the ground truth's boundary band tinted green (the band boundary IoU
    scores, `metrics.mask_to_boundary` at full resolution) and the predicted outline drawn in orange."""
    from seglib.metrics import mask_to_boundary

    image = to_rgb(rgb)
    p, t = as_mask(pred, threshold), as_mask(truth)
    _check_shapes(image, p, t)
    band = mask_to_boundary(t, dilation_ratio)
    small = downscale(image, max_side)
    band_s = downscale(band, max_side, is_mask=True)
    pred_s = downscale(p, max_side, is_mask=True).astype(np.uint8)
    out = small.copy()
    _blend(out, small, band_s, BAND_COLOR, alpha)
    contours, _ = cv2.findContours(pred_s, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in CONTOUR_COLOR), 1)
    return out


def boundary_legend_handles() -> list:
    """Legend entries for `boundary_overlay`."""
    from matplotlib.lines import Line2D

    return [Patch(color=np.asarray(BAND_COLOR) / 255, alpha=0.55, label="boundaries: ground-truth boundary band"),
            Line2D([], [], color=np.asarray(CONTOUR_COLOR) / 255, lw=2, label="boundaries: predicted outline")]


@styled
def failure_gallery(records: Sequence[Mapping], per_image: pd.DataFrame, k: int = 8, *,
                    notes: Mapping[str, str] | None = None, title: str = "", max_side: int | None = MAX_SIDE,
                    dilation_ratio: float = 0.02) -> Figure:
    """The k lowest-IoU images, one row each: photo | ground truth | prediction | errors | boundaries.

    `records` are dicts with id, image, mask and pred (0/1, or prob) at mask resolution
    (`evaluate.predictions_for_split`, `failures.predict_ids`); `per_image` is the evaluation's table, whose
    iou / boundary_iou / fp / fn are shown (the scores of record). Errors: false positives magenta, false
    negatives cyan; boundaries: the ground truth's boundary band green, the predicted outline orange.
    `notes` ({id: text}) adds a line under each photo's title (e.g. its failure categories).
    """
    by_id = {str(r["id"]): r for r in records}
    scores = per_image.assign(id=per_image["id"].astype(str))
    scores = scores[scores["id"].isin(by_id)].sort_values(["iou", "id"], kind="stable").head(max(0, int(k)))
    n = len(scores)
    if n == 0:
        raise ValueError("failure_gallery: no scored image has a record to show")
    fig, axes = new_figure(n, 5, height=PANEL * n + 0.7)
    for row, s in enumerate(scores.itertuples(index=False)):
        rec = by_id[s.id]
        img = to_rgb(rec["image"])
        t = as_mask(rec["mask"])
        p = as_mask(rec["pred"] if "pred" in rec else rec["prob"])
        _check_shapes(img, t, p)
        small, ts, ps = (downscale(img, max_side), downscale(t, max_side, is_mask=True),
                         downscale(p, max_side, is_mask=True))
        pixels = t.size
        fp = getattr(s, "fp", int(np.count_nonzero(p & ~t)))
        fn = getattr(s, "fn", int(np.count_nonzero(~p & t)))
        biou = getattr(s, "boundary_iou", float("nan"))
        note = (notes or {}).get(s.id, "")
        panels = [
            (small, f"id {s.id}" + (f"\n{note}" if note else "")),
            (overlay(small, ts, TRUTH_COLOR), f"ground truth ({t.mean():.0%} person)"),
            (overlay(small, ps, PRED_COLOR), f"prediction ({p.mean():.0%} person)"),
            (error_overlay(small, ps, ts), f"IoU {s.iou:.3f}: FP {fp / pixels:.0%}, FN {fn / pixels:.0%}"),
            (boundary_overlay(img, p, t, dilation_ratio=dilation_ratio, max_side=max_side),
             f"boundary IoU {biou:.3f}"),
        ]
        for ax, (panel, name) in zip(axes[row], panels, strict=True):
            _image_axis(ax, panel, name)
    fig.legend(handles=error_legend_handles() + boundary_legend_handles(), loc="outside lower center", ncols=2,
               frameon=False)  # columns fill first: errors left, boundaries right
    if title:
        fig.suptitle(title)
    return fig


@styled
def category_plot(data: pd.DataFrame, reference: str = "all images") -> Figure:
    """IoU per failure category: box plot with every image as a dot, categories ordered by mean IoU (lowest
    at the top), n in each label, the `reference` row grey and its mean as a dashed line.

    `data` is long: columns category and iou (`failures.category_long`); a categorical `category` keeps
    its order, otherwise categories are ordered by mean IoU.
    """
    import seaborn as sns

    if data.empty:
        raise ValueError("category_plot: no rows")
    df = data.assign(category=data["category"].astype(str), iou=data["iou"].astype(float))
    if isinstance(data["category"].dtype, pd.CategoricalDtype):
        order = [c for c in data["category"].cat.categories if c in set(df["category"])]
    else:
        order = df.groupby("category")["iou"].mean().sort_values(kind="stable").index.tolist()
    counts = df["category"].value_counts()
    palette = {c: ("0.6" if c == reference else "#4C72B0") for c in order}
    fig, ax = new_figure(1, 1, width=8.5, height=0.42 * len(order) + 1.3, squeeze=True)
    _boxplot(data=df, x="iou", y="category", hue="category", order=order, hue_order=order, palette=palette,
             ax=ax, showfliers=False, width=0.6, boxprops={"alpha": 0.35}, legend=False)
    sns.stripplot(data=df, x="iou", y="category", hue="category", order=order, hue_order=order, palette=palette,
                  ax=ax, size=3.5, jitter=0.15, edgecolor="0.2", linewidth=0.3, legend=False)
    means = df.groupby("category")["iou"].mean()
    ax.scatter([means[c] for c in order], range(len(order)), marker="D", s=22, color="black", zorder=4,
               label="mean IoU")
    if reference in means:
        ax.axvline(means[reference], color="0.4", ls="--", lw=1, label=f"{reference}: mean {means[reference]:.2f}")
    ax.set_yticks(range(len(order)), [f"{c} (n={counts[c]})" for c in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU per image")
    ax.set_ylabel("")
    ax.set_title("IoU per category, lowest mean first")
    ax.legend(loc="lower left", fontsize=7)
    return fig
