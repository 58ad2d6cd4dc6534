"""Notebook 04: headline tables, IoU distributions, the threshold sweep, IoU against covariates."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seglib.viz.style import SPLIT_COLORS, new_figure, styled


def boxplot(**kwargs) -> None:
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
    boxplot(data=df, x="iou", y="split", hue="split", order=names, hue_order=names, palette=palette, ax=ax,
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
