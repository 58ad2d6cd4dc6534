"""Figures and display tables for the notebooks and reports.

Every plotting function takes arrays or DataFrames and returns a `matplotlib.figure.Figure`; nothing is
shown, saved or registered with pyplot, so the functions are safe in scripts, tests (Agg) and notebooks
(displaying the returned figure is enough, and it is displayed once). Figures share one style (`STYLE`,
applied per figure through `rc_context`, never globally; seaborn is used axes-level only, without
`set_theme`). Large photos are downscaled for display (longest side `MAX_SIDE`) to keep HTML reports small.

Colour conventions: ground truth green, prediction orange; in error overlays true positives are lightly
tinted green, false positives magenta and false negatives cyan (`add_error_legend` explains them).

One module per notebook stage: `style`, `images` (shared photo panels), `dataset_plots` (01), `augment` (02),
`training` (03), `evaluation` (04), `failures` (05), and `tables`; everything is re-exported here, so
notebooks use `viz.NAME`.
"""

from seglib.infra.arrays import as_mask, to_rgb  # noqa: F401
from seglib.transforms.checks import (  # noqa: F401
    ALIGNED_SHARE,
    alignment_verdict,
    apply_transform,
    binary_alignment_check,
    check_image,
)
from seglib.viz.augment import (  # noqa: F401
    augmentation_grid,
    geometry_grid,
    named_ops,
    ops_table,
    per_transform_grid,
)
from seglib.viz.curves import (  # noqa: F401
    training_curves,
)
from seglib.viz.dataset_plots import (  # noqa: F401
    colour_mode_table,
    fg_fraction_hist,
    size_relation_table,
    size_scatter,
    split_summary_table,
)
from seglib.viz.evaluation import (  # noqa: F401
    headline_comparison,
    iou_distribution,
    iou_vs_covariates,
    threshold_sweep_plot,
)
from seglib.viz.failures import (  # noqa: F401
    category_plot,
    failure_gallery,
)
from seglib.viz.images import (  # noqa: F401
    BAND_COLOR,
    CONTOUR_COLOR,
    add_error_legend,
    boundary_legend_handles,
    boundary_overlay,
    downscale,
    error_legend_handles,
    error_overlay,
    on_checkerboard,
    overlay,
    prediction_grid,
    sample_grid,
)
from seglib.viz.style import (  # noqa: F401
    DPI,
    FN_COLOR,
    FP_COLOR,
    MAX_SIDE,
    PANEL,
    PRED_COLOR,
    RELATION_COLORS,
    SPLIT_COLORS,
    STYLE,
    TP_COLOR,
    TRUTH_COLOR,
    new_figure,
    styled,
)
from seglib.viz.summary_tables import (  # noqa: F401
    config_table,
    key_value_table,
)
