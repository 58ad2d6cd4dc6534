"""Figures and display tables for the notebooks and reports.

Every plotting function takes arrays or DataFrames and returns a `matplotlib.figure.Figure`; nothing is
shown, saved or registered with pyplot, so the functions are safe in scripts, tests (Agg) and notebooks
(displaying the returned figure is enough, and it is displayed once). Figures share one style (`STYLE`,
applied per figure through `rc_context`, never globally; seaborn is used axes-level only, without
`set_theme`). Large photos are downscaled for display (longest side `MAX_SIDE`) to keep HTML reports small.

Colour conventions: ground truth green, prediction orange; in error overlays true positives are lightly
tinted green, false positives magenta and false negatives cyan (`add_error_legend` explains them).

One module per notebook stage: `style`, `images` (shared photo panels), `dataset_plots` (01), `augment` (02),
`curves` (03), `evaluation` (04), `failures` (05), and `summary_tables`; everything is re-exported here, so
notebooks use `viz.NAME`.
"""

from seglib.infra.arrays import as_mask, to_rgb
from seglib.transforms.checks import (
    ALIGNED_SHARE,
    alignment_verdict,
    apply_transform,
    binary_alignment_check,
    check_image,
)
from seglib.viz.augment import augmentation_grid, geometry_grid, named_ops, ops_table, per_transform_grid
from seglib.viz.curves import training_curves
from seglib.viz.dataset_plots import (
    colour_mode_table,
    fg_fraction_hist,
    size_relation_table,
    size_scatter,
    split_summary_table,
)
from seglib.viz.evaluation import (
    headline_comparison,
    iou_distribution,
    iou_vs_covariates,
    threshold_sweep_plot,
)
from seglib.viz.failures import category_plot, failure_gallery
from seglib.viz.images import (
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
from seglib.viz.style import (
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
from seglib.viz.summary_tables import config_table, key_value_table
