"""IoU evaluation at the ground truth's resolution, with the threshold chosen on val and simple baselines; the
protocol in full is docs/protocol.md. Outputs: `runs/NAME/eval/<split>/` (`per_image.csv`, `metrics.json` written
last, on val `threshold_sweep.csv`).

Modules: `records` (the model over a split), `scoring`, `baselines`, `options` (`EvalOptions`), `protocol`
(`evaluate_run`), `tables` (`EvalResult`, headline tables), `reuse` (`load_or_evaluate`, and
which sets a notebook scores a run on), `failure_analysis` (failure categories).
"""

from seglib.evaluate.baselines import (
    BASELINE_KEYS,
    BASELINES,
    PRIOR_SIZE,
    baseline_scores,
    mean_mask_prior,
    prior_for,
)
from seglib.evaluate.options import EvalOptions
from seglib.evaluate.protocol import evaluate_run
from seglib.evaluate.records import (
    PER_IMAGE_COLUMNS,
    SPLITS,
    collect_probabilities,
    predictions_for_split,
    split_items,
)
from seglib.evaluate.reuse import load_or_evaluate, saved_result
from seglib.evaluate.scoring import (
    SCORED_AT,
    SWEEP_THRESHOLDS,
    choose_threshold,
    score_records,
    threshold_sweep,
)
from seglib.evaluate.tables import (
    HEADLINE_COLUMNS,
    EvalResult,
    format_table,
    headline_from_metrics,
    headline_table,
    load_metrics,
)
