"""Notebook 01's figures and tables: sizes, aspect ratios, foreground fractions, quirks, the split."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seglib.viz.style import RELATION_COLORS, SPLIT_COLORS, new_figure, styled


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
