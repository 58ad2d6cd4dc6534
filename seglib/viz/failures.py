"""Notebook 05: the failure gallery and the failure-category plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seglib.infra.arrays import as_mask, check_shapes
from seglib.viz.evaluation import boxplot
from seglib.viz.images import (
    boundary_legend_handles,
    boundary_overlay,
    downscale,
    error_legend_handles,
    error_overlay,
    image_axis,
    overlay,
    to_rgb,
)
from seglib.viz.style import MAX_SIDE, PANEL, PRED_COLOR, TRUTH_COLOR, new_figure, styled


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
        check_shapes(img, t, p)
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
            image_axis(ax, panel, name)
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
    boxplot(data=df, x="iou", y="category", hue="category", order=order, hue_order=order, palette=palette,
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
