"""IoU evaluation at the ground truth's resolution, with the threshold chosen on val and simple baselines.

Protocol (`seglib evaluate`):

- every image is decoded at its MASK's size (`load_pair`: the data set's masks are the ground truth, and 198
  of them are a downscale of their photo); the model's probabilities are mapped back to that size
  (`Predictor.predict_proba`) and scored there, never at the training size;
- the probability threshold is chosen on val (a sweep of `SWEEP_THRESHOLDS`, maximising the mean per-image
  IoU; ties go to the threshold closest to 0.5) and then applied unchanged to test;
- test is scored once per run: re-scoring an existing `eval/test` needs `overwrite=True` (`--overwrite`);
- three baselines are scored the same way on the same split: all-background, all-foreground and a
  mean-mask prior built from the TRAIN split only;
- the split files are read once per evaluation (`data.snapshot`): every table comes from that one version,
  and a split rewritten before the results are written is refused (nothing is written);
- an external set is identified by its content (`PairSet.content_sha1`), so saved scores are never shown for
  another set of the same name.

Outputs go to `runs/NAME/eval/<split>/` (or `OUT/<split>/` for a checkpoint outside runs/):
`per_image.csv`, `metrics.json` (written last: its presence means the evaluation completed) and, on val,
`threshold_sweep.csv`. Probability maps are kept in memory only, for the length of one call.

Modules: `records` (the model over a split), `scoring`, `baselines`, `options` (`EvalOptions`, how
`evaluate_run` scores), `protocol` (`evaluate_run`), `tables` (`EvalResult`, headline tables), `reuse`
(`load_or_evaluate`).
"""

from seglib.evaluate.baselines import (  # noqa: F401
    BASELINE_KEYS,
    BASELINES,
    PRIOR_SIZE,
    baseline_scores,
    mean_mask_prior,
    prior_for,
)
from seglib.evaluate.options import (  # noqa: F401
    EvalOptions,
)
from seglib.evaluate.protocol import (  # noqa: F401
    evaluate_run,
)
from seglib.evaluate.records import (  # noqa: F401
    PER_IMAGE_COLUMNS,
    SPLITS,
    collect_probabilities,
    predictions_for_split,
    split_items,
)
from seglib.evaluate.reuse import (  # noqa: F401
    load_or_evaluate,
    saved_result,
)
from seglib.evaluate.scoring import (  # noqa: F401
    SCORED_AT,
    SWEEP_THRESHOLDS,
    choose_threshold,
    score_records,
    threshold_sweep,
)
from seglib.evaluate.tables import (  # noqa: F401
    HEADLINE_COLUMNS,
    EvalResult,
    format_table,
    headline_from_metrics,
    headline_table,
    load_metrics,
)
