"""seglib.viz: every figure function runs on tiny inputs and returns a Figure; overlays touch only what they should."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import image_and_box_mask
from matplotlib.figure import Figure

from seglib import viz
from seglib.profiles import make_config
from seglib.transforms.pipelines import eval_transform, geometric_ops, photometric_ops, train_transform


def pair(h=40, w=56, seed=0):
    return image_and_box_mask(h, w, seed)


def check_table():
    return pd.DataFrame({
        "id": ["1", "2", "3", "4"],
        "image_width": [300, 640, 200, 1000], "image_height": [200, 480, 300, 800],
        "mask_width": [300, 577, 200, 500], "mask_height": [200, 433, 300, 400],
        "size_relation": ["same", "scaled", "same", "scaled"], "scale": [1.0, 1.109, 1.0, 2.0],
        "image_mode": ["RGB", "RGB", "L", "RGB"], "mask_mode": ["L"] * 4,
        "aspect_ratio": [1.5, 1.333, 0.667, 1.25], "fg_fraction": [0.2, 0.35, 0.5, 0.1],
    })


def test_overlay_leaves_background_unchanged_and_tints_mask():
    image, mask = pair()
    out = viz.overlay(image, mask, color=(0, 255, 0), alpha=0.45)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], image[mask == 0])
    assert not np.array_equal(out[mask == 1], image[mask == 1])
    # outline drawn solid on the mask's inner edge; interior blended
    h, w = mask.shape
    assert tuple(out[h // 4, w // 2]) == (0, 255, 0)
    assert tuple(out[h // 2, w // 2]) != (0, 255, 0)


def test_overlay_accepts_0_255_masks_gray_images_and_checks_shapes():
    image, mask = pair()
    gray = image[:, :, 0]
    a = viz.overlay(gray, mask * 255, outline=False)
    assert a.shape == (*mask.shape, 3)
    assert np.array_equal(a[mask == 0][:, 0], gray[mask == 0])
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay(image, mask[:-1])


def test_a_cutout_on_a_checkerboard_keeps_the_figure_and_shows_the_board_where_transparent():
    from seglib.viz import on_checkerboard

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (200, 10, 10, 255)
    shown = on_checkerboard(rgba, square=5)
    assert shown.shape == (40, 40, 3) and (shown[15, 15] == (200, 10, 10)).all()
    assert set(np.unique(shown[:5, :10, 0]).tolist()) == {200, 235}


def test_error_overlay_colours_fp_and_fn_distinctly_and_leaves_tn():
    image = np.full((20, 20, 3), 128, np.uint8)
    truth = np.zeros((20, 20), np.uint8)
    pred = np.zeros((20, 20), np.uint8)
    truth[2:10, 2:10] = 1  # TP where both, FN where truth only
    pred[2:10, 2:6] = 1
    pred[12:16, 12:16] = 1  # FP
    out = viz.error_overlay(image, pred, truth)
    tn = (pred == 0) & (truth == 0)
    assert np.array_equal(out[tn], image[tn])
    tp_px, fn_px, fp_px = out[3, 3], out[3, 8], out[13, 13]
    assert not np.array_equal(fp_px, fn_px)
    for px in (tp_px, fn_px, fp_px):
        assert not np.array_equal(px, image[0, 0])
    # FP magenta-ish (red and blue high, green low), FN cyan-ish (green and blue high, red low)
    assert fp_px[0] > fp_px[1] and fp_px[2] > fp_px[1]
    assert fn_px[1] > fn_px[0] and fn_px[2] > fn_px[0]
    # a TP is only lightly tinted: closer to the photo than the errors are
    assert np.abs(tp_px.astype(int) - 128).sum() < np.abs(fp_px.astype(int) - 128).sum()
    # probabilities are thresholded
    probs = pred.astype(np.float32) * 0.9
    assert np.array_equal(viz.error_overlay(image, probs, truth), out)
    assert len(viz.error_legend_handles()) == 3


def test_sample_and_prediction_grids_return_figures_and_downscale():
    image, mask = pair(h=300, w=400)
    fig = viz.sample_grid([image, image, image], [mask, None, mask * 255], ["a", "b", "c"], ncols=2)
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    assert max(shown.shape[:2]) <= viz.MAX_SIDE
    probs = np.clip(mask + 0.2 * np.random.default_rng(0).standard_normal(mask.shape), 0, 1)
    fig = viz.prediction_grid([image, image], [mask, mask], [probs, mask], ["x", "y"], threshold=0.5)
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 8
    assert "IoU 1.000" in fig.axes[7].get_title()
    with pytest.raises(ValueError):
        viz.prediction_grid([image], [mask], [])


def test_dataset_figures_and_tables():
    table = check_table()
    assert isinstance(viz.size_scatter(table), Figure)
    assert isinstance(viz.fg_fraction_hist(table), Figure)
    splits = {"train": table.iloc[:2], "val": table.iloc[2:3], "test": table.iloc[3:]}
    assert isinstance(viz.fg_fraction_hist(splits), Figure)
    rel = viz.size_relation_table(table)
    assert rel.loc["scaled", "pairs"] == 2 and rel.loc["scaled", "scale_max"] == 2.0
    modes = viz.colour_mode_table(table)
    assert modes["pairs"].sum() == 4 and "3" in modes.loc[modes["image_mode"] == "L", "example_ids"].iloc[0]
    summary = pd.DataFrame({"split": ["train", "val", "test"], "n_images": [6, 2, 2], "fg_mean": [0.2, 0.3, 0.25],
                            "fg_median": [0.2, 0.3, 0.25], "fg_min": [0.1, 0.2, 0.2], "fg_max": [0.4, 0.4, 0.3]})
    shown = viz.split_summary_table(summary)
    assert shown.loc["train", "share"] == 0.6


def test_config_and_key_value_tables():
    base = make_config("smoke")
    cfg = make_config("smoke", {"epochs": 5})
    t = viz.config_table(cfg, base=base)
    assert t.loc["epochs", "value"] == "5" and t.loc["epochs", "changed"] == "yes"
    assert t.loc["lr", "changed"] == ""
    kv = viz.key_value_table({"best_val_iou": 0.123456789, "weights": "random init"})
    assert kv.loc["best_val_iou", "value"] == "0.123457"


def test_augmentation_figures_run_without_normalize_and_with_it():
    image, mask = pair(64, 48)
    fig = viz.augmentation_grid(image, mask, train_transform(32, "standard", normalize=False, seed=0), n=3,
                                ncols=2)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 4
    # a normalised tensor pipeline is un-normalised for display
    img, m = viz.apply_transform(eval_transform(32), image, mask)
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3) and m.shape == (32, 32)
    ops = viz.named_ops(geometric_ops("standard") + photometric_ops("standard"), seed=0)
    assert {"Affine", "HorizontalFlip", "GaussianBlur", "GaussNoise"} <= set(ops)
    assert all(op.transforms[0].p == 1.0 for op in ops.values())
    assert geometric_ops("standard")[0].p < 1.0  # the originals are untouched
    table = viz.ops_table(train_transform(32, "standard", normalize=False).transforms)
    assert table["op"].tolist()[:3] == ["LongestMaxSize", "PadIfNeeded", "Affine"]
    assert "GaussNoise" in table.loc[table["op"] == "OneOf", "settings"].iloc[0]
    fig = viz.per_transform_grid(image, mask, ops, seed=0)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 1 + len(ops)


def test_training_curves(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.2, 0.9, 0.7], "val_loss": [1.3, 1.0, 0.95],
                            "val_iou": [0.3, 0.5, 0.45], "lr": [1e-3, 5e-3, 1e-4], "best": [True, True, False]})
    fig = viz.training_curves(history)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert "epoch 2" in fig.axes[1].get_legend().get_texts()[0].get_text()
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    assert isinstance(viz.training_curves(path), Figure)
    with pytest.raises(ValueError, match="empty"):
        viz.training_curves(history.iloc[:0])


def test_figures_do_not_touch_global_state():
    import matplotlib.pyplot as plt

    before = matplotlib.rcParams["font.size"], len(plt.get_fignums())
    viz.sample_grid([pair()[0]], [pair()[1]])
    viz.fg_fraction_hist(check_table())
    assert (matplotlib.rcParams["font.size"], len(plt.get_fignums())) == before


# ----------------------------------------------------------------------------------------------- evaluation


def per_image_table(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [str(i) for i in range(n)], "iou": rng.random(n), "boundary_iou": rng.random(n),
                         "fg_fraction": rng.random(n), "height": rng.integers(100, 600, n),
                         "width": rng.integers(100, 600, n), "fp": rng.integers(0, 50, n),
                         "fn": rng.integers(0, 50, n)})


def headline(shift=0.0):
    return pd.DataFrame({"mean_iou": [0.8 + shift, 0.3], "ci95_low": [0.75, 0.25], "ci95_high": [0.85, 0.35],
                         "median_iou": [0.82, 0.28], "pooled_iou": [0.81, 0.3], "mean_dice": [0.88, 0.45],
                         "mean_boundary_iou": [0.5, 0.1]}, index=pd.Index(["model", "all-foreground"], name="method"))


def test_evaluation_figures_and_headline_comparison():
    table = viz.headline_comparison({"test": headline(), "val": headline(0.01)})
    assert list(table.columns.get_level_values(0).unique()) == ["test", "val"]
    assert table.loc["model", ("test", "95% CI")] == "0.750-0.850"
    assert table.loc["model", ("val", "mean IoU")] == pytest.approx(0.81)
    splits = {"test": per_image_table(), "val": per_image_table(seed=1)}
    assert isinstance(viz.iou_distribution(splits), Figure)
    assert isinstance(viz.iou_distribution(per_image_table()), Figure)
    assert isinstance(viz.iou_vs_covariates(splits), Figure)
    sweep = pd.DataFrame({"threshold": [0.3, 0.4, 0.5], "mean_iou": [0.7, 0.8, 0.75], "pooled_iou": [0.7, 0.78, 0.7]})
    fig = viz.threshold_sweep_plot(sweep, 0.4)
    assert any("chosen t = 0.4" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_boundary_overlay_tints_the_truth_band_and_draws_the_predicted_outline():
    image = np.zeros((40, 40, 3), np.uint8)
    truth = np.zeros((40, 40), np.uint8)
    truth[5:35, 5:35] = 1
    pred = np.zeros((40, 40), np.uint8)
    pred[12:28, 12:28] = 1
    out = viz.boundary_overlay(image, pred, truth, dilation_ratio=0.05)
    assert out.shape == image.shape
    assert out[6, 20, 1] > 0 and out[6, 20, 0] == 0  # inside the truth's band: green
    assert tuple(out[20, 20]) == (0, 0, 0)  # deep inside both masks: untouched
    assert tuple(out[12, 20]) == viz.CONTOUR_COLOR  # the predicted outline


def test_failure_gallery_shows_the_worst_first_with_a_legend():
    image, mask = pair()
    scores = per_image_table(4)
    scores["iou"] = [0.9, 0.2, 0.5, 0.1]
    records = [{"id": str(i), "image": image, "mask": mask, "pred": np.roll(mask, i * 3, axis=1)} for i in range(4)]
    fig = viz.failure_gallery(records, scores, k=2, notes={"3": "small figure"})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "id 3\nsmall figure" and titles[5] == "id 1"
    assert len(fig.axes) == 10 and any("IoU 0.100" in t for t in titles[:5])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("false positive" in t for t in labels) and any("false negative" in t for t in labels)
    assert any("boundary band" in t for t in labels)
    with pytest.raises(ValueError, match="no scored image"):
        viz.failure_gallery([], scores)


def test_category_plot_orders_by_mean_and_counts():
    data = pd.DataFrame({"category": ["all images"] * 4 + ["dark"] * 2 + ["several people"],
                         "iou": [0.9, 0.8, 0.3, 0.6, 0.3, 0.6, 0.2]})
    fig = viz.category_plot(data)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["several people (n=1)", "dark (n=2)", "all images (n=4)"]
    with pytest.raises(ValueError):
        viz.category_plot(data.iloc[:0])


def test_geometry_grid_shows_each_input_shape_and_its_padding():
    image, mask = image_and_box_mask(h=48, w=64)  # 4:3 landscape
    fig = viz.geometry_grid(image, mask, 32, multiple=8)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["photo 64x48", "letterbox: 32x32, 25% padding", "resize: 32x32, 0% padding",
                      "rect: 32x24, 0% padding"]
