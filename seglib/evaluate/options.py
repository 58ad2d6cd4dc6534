"""How `evaluate_run` scores, as one object: `EvalOptions` (what is scored — a run, a checkpoint, a split — is not
an option and stays an argument)."""

from __future__ import annotations

from dataclasses import dataclass

from seglib.infra.errors import SeglibError

THRESHOLD_SOURCES = ("val", "checkpoint")


@dataclass(frozen=True)
class EvalOptions:
    """The settings of one evaluation.

    tta: average with a horizontally flipped prediction (an in-memory predictor keeps its own flag unless True);
    overwrite: score test (or an external set) again although it is already scored; progress: show a progress
    bar; n_boot: bootstrap resamples of the 95% intervals; threshold_source: "val" (val's sweep) or "checkpoint"
    (the training threshold); device: where a checkpoint is loaded ("auto" when None); batch_size: photos per
    call of the model; refine: boundary refinement of the probabilities at each photo's resolution (a guided
    filter; `seglib.predict.outputs.refine_probabilities`).
    """

    tta: bool = False
    overwrite: bool = False
    progress: bool = True
    n_boot: int = 2000
    threshold_source: str = "val"
    device: str | None = None
    batch_size: int = 8
    refine: bool = False

    def __post_init__(self):
        if self.threshold_source not in THRESHOLD_SOURCES:
            raise SeglibError(f"threshold_source {self.threshold_source!r}: expected 'val' or 'checkpoint'")
