"""Notebook 03: learning curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from seglib.viz.style import new_figure, styled


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
