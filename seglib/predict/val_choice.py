"""The choice a model's reported scores used: the threshold, TTA and prediction-time levers chosen on val for this
very checkpoint.

`seglib evaluate` picks them on val and scores test with them; prediction uses the same by default, so that
`seglib predict --checkpoint FILE` gives the masks the reported test score was computed from. The levers
(`InferenceOptions`) are those of the run's val evaluation, or of a val evaluation with levers that the run has
adopted (`adopt_inference`, `seglib evaluate --split val --adopt`): its threshold comes with them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.io import write_json_atomic
from seglib.infra.paths import display_path
from seglib.predict.levers import InferenceOptions, lever_folder
from seglib.runs import METRICS, Run, read_json

logger = logging.getLogger(__name__)

# Where `make publish-reference` puts the val evaluation of a published checkpoint, relative to its folder.
PUBLISHED_VAL_METRICS = Path("metrics") / "val_metrics.json"
# In a run's eval folder: the levers the run adopted (their val evaluation lies in `lever_folder`).
CHOSEN_INFERENCE = "inference.json"


class ValChoice(NamedTuple):
    """Threshold, flip TTA and levers, where they come from, and whether val chose them."""

    threshold: float
    tta: bool
    source: str
    chosen_on_val: bool
    inference: InferenceOptions = InferenceOptions()


def val_evaluations(checkpoint: Path, levers: InferenceOptions | None = None) -> tuple[Path, ...]:
    """Where a checkpoint's val evaluation may lie: the val evaluation of the levers its run adopted (of `levers`
    when given), its run's eval/val/metrics.json, or beside a published one."""
    checkpoint = Path(checkpoint)
    run = Run(checkpoint.parent)
    if levers is None:
        adopted = read_json(run.eval_root / CHOSEN_INFERENCE)
        try:
            levers = InferenceOptions.from_record(adopted) if isinstance(adopted, dict) else None
        except ConfigError:
            levers = None
    chosen = (lever_folder(run.eval_root, levers) / "val" / METRICS,) if levers is not None and levers.active else ()
    return *chosen, run.metrics_file("val"), checkpoint.parent / PUBLISHED_VAL_METRICS


def val_protocol(checkpoint: str | Path, state: dict, levers: InferenceOptions | None = None) -> ValChoice:
    """The threshold, TTA and levers chosen on val for this checkpoint (same file name and epoch); without such an
    evaluation, the checkpoint's own threshold, no TTA and no levers. With `levers` given, their own val evaluation
    is looked for instead of the adopted one. An unreadable metrics file counts as absent."""
    checkpoint = Path(checkpoint)
    for path in val_evaluations(checkpoint, levers):
        metrics = read_json(path) or {}
        if not isinstance(metrics, dict) or "threshold" not in metrics:
            continue
        same_file = Path(str(metrics.get("checkpoint", checkpoint.name))).name == checkpoint.name
        if same_file and metrics.get("checkpoint_epoch") == state.get("epoch"):
            try:
                threshold = float(metrics["threshold"])
                inference = InferenceOptions.from_record(metrics)
            except (TypeError, ValueError, ConfigError):
                continue
            return ValChoice(threshold, bool(metrics.get("tta")), f"chosen on val, {display_path(path)}", True,
                             inference)
    return ValChoice(float(state["threshold"]), False, "stored in the checkpoint (no val evaluation of it found)",
                    False)


def adopt_inference(run: str | Path | Run, inference: InferenceOptions) -> Path:
    """Record `inference`'s levers as the run's choice: from now on its predictions use them with the threshold
    and TTA of their val evaluation (`evaluate_run(run, "val", options=EvalOptions(scales=...))`, which must be of
    the run's current best checkpoint). Levers all off forget an earlier choice. Returns the record's path."""
    run = Run.resolve(run)
    record = run.eval_root / CHOSEN_INFERENCE
    if not inference.active:
        if record.is_file():
            record.unlink()
            logger.info(f"{display_path(record)}: removed; {run.name} predicts without levers again")
        return record
    from seglib.checkpoint import load_checkpoint

    best = run.require("best")
    evaluation = lever_folder(run.eval_root, inference) / "val" / METRICS
    metrics = read_json(evaluation) or {}
    if not (isinstance(metrics, dict) and "threshold" in metrics and Path(str(metrics.get("checkpoint", ""))).name
            == best.name and metrics.get("checkpoint_epoch") == load_checkpoint(best).get("epoch")):
        raise SeglibError(f"{display_path(evaluation)}: no val evaluation of {display_path(best)} with "
                          f"{inference.tag()}; score val with these levers first (seglib evaluate --split val)")
    write_json_atomic(record, {"inference": inference.record(), "val_metrics": display_path(evaluation)})
    logger.info(f"{run.name}: predicts with {inference.levers.describe()} by default, threshold "
                f"{float(metrics['threshold']):g} (recorded in {display_path(record)})")
    return record
