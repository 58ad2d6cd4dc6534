"""How `evaluate_run` scores, as one object: `EvalOptions` (what is scored — a run, a checkpoint, a split — is not
an option and stays an argument)."""

from __future__ import annotations

from dataclasses import dataclass

from seglib.infra.errors import SeglibError
from seglib.predict.levers import InferenceOptions

THRESHOLD_SOURCES = ("val", "checkpoint")


@dataclass(frozen=True)
class EvalOptions:
    """The settings of one evaluation.

    tta: average with a horizontally flipped prediction (an in-memory predictor keeps its own flag unless True);
    overwrite: score test (or an external set) again although it is already scored; progress: show a progress
    bar; n_boot: bootstrap resamples of the 95% intervals; threshold_source: "val" (val's sweep) or "checkpoint"
    (the training threshold); device: where a checkpoint is loaded ("auto" when None); batch_size: photos per
    call of the model; refine: boundary refinement of the probabilities at each photo's resolution (a guided
    filter; `seglib.predict.outputs.refine_probabilities`); scales, max_upscale, second_look: the prediction-time
    levers of `seglib.predict.levers.InferenceOptions` (input sizes averaged, the cap on magnifying a photo, a
    second look at each figure). An evaluation with any of these or refine is saved apart from the plain one, under
    `<eval>/@<levers>/<split>/` (`inference.tag()`), and val's threshold is chosen with them.
    """

    tta: bool = False
    overwrite: bool = False
    progress: bool = True
    n_boot: int = 2000
    threshold_source: str = "val"
    device: str | None = None
    batch_size: int = 8
    refine: bool = False
    scales: tuple[int, ...] = ()
    max_upscale: float = 0.0
    second_look: bool = False

    def __post_init__(self):
        if self.threshold_source not in THRESHOLD_SOURCES:
            raise SeglibError(f"threshold_source {self.threshold_source!r}: expected 'val' or 'checkpoint'")
        inference = self.inference  # checked, and the scales kept in their one order
        object.__setattr__(self, "scales", inference.scales)
        object.__setattr__(self, "max_upscale", inference.max_upscale)

    @property
    def inference(self) -> InferenceOptions:
        """The prediction-time levers these options score with, refine included."""
        return InferenceOptions(self.scales, self.max_upscale, self.second_look, self.refine)
