"""What training shows and records besides checkpoints: the epochs widget in Jupyter, the time left, history.csv."""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

from seglib.infra.io import write_text_atomic
from seglib.runs import Run
from seglib.settings import TrainConfig

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_iou", "lr", "epoch_seconds", "images_per_second",
                   "best"]


def in_jupyter() -> bool:
    """Running inside a Jupyter kernel (a notebook, papermill), where a progress widget can be shown."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def epochs_widget(cfg: TrainConfig, start_epoch: int, *, enabled: bool):
    """One progress widget over the epochs for Jupyter; None when disabled."""
    if not enabled or start_epoch > cfg.epochs:
        return None
    from tqdm.notebook import tqdm as notebook_tqdm

    return notebook_tqdm(total=cfg.epochs, initial=start_epoch - 1, desc="training", unit="epoch")


def minutes_left(history: list[dict], cfg: TrainConfig, start_epoch: int, epoch: int, train_seconds: float) -> str:
    """'  ~N.N min left' from the mean epoch time so far (capped by max_train_minutes), '' when done."""
    if epoch >= cfg.epochs:
        return ""
    recent = [h["epoch_seconds"] for h in history[-5:]]
    left = (cfg.epochs - epoch) * sum(recent) / len(recent)
    if cfg.max_train_minutes:
        left = min(left, max(0.0, cfg.max_train_minutes * 60 - train_seconds))
    return f"  ~{left / 60:.1f} min left"


def mean_images_per_second(history: list[dict]) -> float:
    """The mean of the epochs' training speeds (0 with no epoch)."""
    if not history:
        return 0.0
    return sum(h["images_per_second"] for h in history) / len(history)


def write_history(run_dir: Path, history: list[dict]) -> None:
    """history.csv: one row per epoch, floats to 6 significant digits; a run on several sets adds each set's val
    mean IoU after the columns every run has."""
    buf = io.StringIO()
    more = [key for key in dict.fromkeys(k for row in history for k in row) if key not in HISTORY_COLUMNS]
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS + more, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})
    write_text_atomic(Run(run_dir).history_file, buf.getvalue())
