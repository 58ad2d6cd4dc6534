"""The choice a model's reported scores used: the threshold and TTA chosen on val for this very checkpoint.

`seglib evaluate` picks them on val and scores test with them; prediction uses the same by default, so that
`seglib predict --checkpoint FILE` gives the masks the reported test score was computed from.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from seglib.infra.paths import display_path
from seglib.runs import Run, read_json

# Where `make publish-reference` puts the val evaluation of a published checkpoint, relative to its folder.
PUBLISHED_VAL_METRICS = Path("metrics") / "val_metrics.json"


class ValChoice(NamedTuple):
    """Threshold and flip TTA, where they come from, and whether val chose them."""

    threshold: float
    tta: bool
    source: str
    chosen_on_val: bool


def val_evaluations(checkpoint: Path) -> tuple[Path, ...]:
    """Where a checkpoint's val evaluation may lie: its run's eval/val/metrics.json, or beside a published one."""
    checkpoint = Path(checkpoint)
    return Run(checkpoint.parent).metrics_file("val"), checkpoint.parent / PUBLISHED_VAL_METRICS


def val_protocol(checkpoint: str | Path, state: dict) -> ValChoice:
    """The threshold and TTA chosen on val for this checkpoint (same file name and epoch); without such an
    evaluation, the checkpoint's own threshold and no TTA. An unreadable metrics file counts as absent."""
    checkpoint = Path(checkpoint)
    for path in val_evaluations(checkpoint):
        metrics = read_json(path) or {}
        if not isinstance(metrics, dict) or "threshold" not in metrics:
            continue
        same_file = Path(str(metrics.get("checkpoint", checkpoint.name))).name == checkpoint.name
        if same_file and metrics.get("checkpoint_epoch") == state.get("epoch"):
            try:
                threshold = float(metrics["threshold"])
            except (TypeError, ValueError):
                continue
            return ValChoice(threshold, bool(metrics.get("tta")), f"chosen on val, {display_path(path)}", True)
    return ValChoice(float(state["threshold"]), False, "stored in the checkpoint (no val evaluation of it found)",
                    False)
