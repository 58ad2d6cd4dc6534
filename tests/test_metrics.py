"""Tests of seglib.metrics: hand-computed cases, the empty-set convention, and agreement with smp."""

import numpy as np
import pandas as pd
import pytest
import segmentation_models_pytorch as smp
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torchmetrics.segmentation import MeanIoU

from seglib import metrics as M


def _square(size, top, left, side):
    m = np.zeros((size, size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def _random_masks(n, h, w, seed=0):
    """Random blobs-and-noise masks, with an empty pair and an empty prediction among them."""
    rng = np.random.default_rng(seed)
    target = rng.random((n, h, w)) < rng.uniform(0.1, 0.6, size=(n, 1, 1))
    pred = target ^ (rng.random((n, h, w)) < 0.15)
    target[0], pred[0] = False, False  # both empty
    pred[1] = False  # empty prediction on a non-empty mask
    return pred, target


@pytest.fixture
def hand_4x4():
    """Target: rows 0-1 (8 px). Prediction: top-left 3x3 (9 px). tp=6, fp=3, fn=2, tn=5."""
    target = np.zeros((4, 4), dtype=np.uint8)
    target[:2] = 1
    pred = np.zeros((4, 4), dtype=bool)
    pred[:3, :3] = True
    return pred, target


def test_confusion_and_scores_by_hand(hand_4x4):
    pred, target = hand_4x4
    assert M.confusion(pred, target) == (6, 3, 2, 5)
    assert M.iou(pred, target) == pytest.approx(6 / 11)
    assert M.dice(pred, target) == pytest.approx(12 / 17)
    assert M.precision(pred, target) == pytest.approx(6 / 9)
    assert M.recall(pred, target) == pytest.approx(6 / 8)
    assert all(type(v) is int for v in M.confusion(pred, target))


def test_int_and_bool_masks_agree(hand_4x4):
    pred, target = hand_4x4
    assert M.confusion(pred.astype(np.float32), target.astype(bool)) == M.confusion(pred, target)


EMPTY = np.zeros((4, 4), dtype=bool)
FULL = np.ones((4, 4), dtype=bool)


@pytest.mark.parametrize("fn", [M.iou, M.dice, M.precision, M.recall, M.boundary_iou])
def test_both_empty_scores_one(fn):
    assert fn(EMPTY, EMPTY) == 1.0


@pytest.mark.parametrize("fn", [M.iou, M.dice, M.recall, M.boundary_iou])
def test_empty_prediction_on_nonempty_mask_scores_zero(fn):
    assert fn(EMPTY, FULL) == 0.0


def test_empty_prediction_has_precision_one_by_convention():
    assert M.precision(EMPTY, FULL) == 1.0


@pytest.mark.parametrize("fn", [M.iou, M.dice, M.precision, M.boundary_iou])
def test_nonempty_prediction_on_empty_mask_scores_zero(fn):
    assert fn(FULL, EMPTY) == 0.0


def test_nonempty_prediction_on_empty_mask_has_recall_one_by_convention():
    assert M.recall(FULL, EMPTY) == 1.0


@pytest.mark.parametrize("fn", [M.confusion, M.iou, M.dice, M.boundary_iou, M.image_scores])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((4, 4)), np.zeros((4, 5)))


def test_non_binary_values_raise():
    with pytest.raises(ValueError, match="binar"):
        M.iou(np.full((2, 2), 0.7), np.ones((2, 2)))
    with pytest.raises(ValueError, match="binar"):
        M.iou(np.ones((2, 2)), np.full((2, 2), 255, dtype=np.uint8))


# --- Boundary IoU ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "width"), [((10, 10), 1), ((64, 64), 2), ((300, 400), 10)])
def test_boundary_width_follows_image_diagonal(shape, width):
    assert M.boundary_width(shape) == width


def test_boundary_of_small_square_is_its_one_pixel_ring():
    ring = M.mask_to_boundary(_square(10, 3, 3, 4))  # 10x10 image: d = 1
    expected = _square(10, 3, 3, 4) & ~_square(10, 4, 4, 2)
    np.testing.assert_array_equal(ring, expected)


def test_image_frame_counts_as_edge_like_the_official_code():
    band = M.mask_to_boundary(np.ones((10, 10), dtype=bool))
    assert band[0].all() and band[-1].all() and band[:, 0].all() and band[:, -1].all()
    assert not band[1:-1, 1:-1].any()


def test_boundary_iou_hand_checked_shift():
    """4x4 squares, one shifted right by 1: the rings (12 px each) share rows 3 and 6, cols 4-6 (6 px)."""
    target, pred = _square(10, 3, 3, 4), _square(10, 3, 4, 4)
    assert M.boundary_iou(pred, target) == pytest.approx(6 / 18)
    assert M.iou(pred, target) == pytest.approx(12 / 20)


def test_boundary_iou_identical_masks_is_one():
    mask = _square(64, 10, 20, 30)
    assert M.boundary_iou(mask, mask.copy()) == 1.0


def test_boundary_iou_is_stricter_than_area_iou_on_one_pixel_shift():
    target = _square(64, 16, 16, 32)
    pred = np.roll(target, 1, axis=1)
    area, boundary = M.iou(pred, target), M.boundary_iou(pred, target)
    assert area > 0.9
    assert 0.0 < boundary < 1.0
    assert boundary < area - 0.2


def _reference_boundary(mask, d):
    """Erosion by a (2d+1)^2 square with background outside the image, written independently of cv2."""
    padded = np.pad(mask, d, constant_values=False)
    eroded = sliding_window_view(padded, (2 * d + 1, 2 * d + 1)).all(axis=(-1, -2))
    return mask & ~eroded


@pytest.mark.parametrize(("shape", "ratio"), [((12, 17), 0.02), ((40, 30), 0.05), ((50, 50), 0.1)])
def test_mask_to_boundary_matches_an_independent_erosion(shape, ratio):
    rng = np.random.default_rng(1)
    mask = rng.random(shape) < 0.7
    d = M.boundary_width(shape, ratio)
    np.testing.assert_array_equal(M.mask_to_boundary(mask, ratio), _reference_boundary(mask, d))


# --- per-image rows, pooling and the summary ------------------------------------------------------


def test_image_scores_row(hand_4x4):
    pred, target = hand_4x4
    row = M.image_scores(pred, target)
    assert set(row) == {
        "iou", "dice", "boundary_iou", "precision", "recall",
        "tp", "fp", "fn", "fg_fraction_true", "fg_fraction_pred",
    }  # fmt: skip
    assert (row["tp"], row["fp"], row["fn"]) == (6, 3, 2)
    assert row["iou"] == pytest.approx(6 / 11)
    assert row["fg_fraction_true"] == pytest.approx(8 / 16)
    assert row["fg_fraction_pred"] == pytest.approx(9 / 16)


def test_pooled_sums_counts_before_dividing():
    rows = [{"tp": 90, "fp": 10, "fn": 0}, {"tp": 0, "fp": 0, "fn": 10}]  # per-image IoU 0.9 and 0
    assert M.pooled_iou(rows) == pytest.approx(90 / 110)
    assert M.pooled_dice(pd.DataFrame(rows)) == pytest.approx(180 / 200)
    assert M.pooled_iou([{"tp": 0, "fp": 0, "fn": 0}]) == 1.0
    with pytest.raises(ValueError):
        M.pooled_iou([])


def _per_image_table(n=40, seed=0):
    pred, target = _random_masks(n, 16, 16, seed)
    return pd.DataFrame([M.image_scores(p, t) for p, t in zip(pred, target, strict=True)])


def test_summarise_named_reductions():
    table = _per_image_table()
    s = M.summarise(table, n_boot=500, seed=0)
    assert s["n_images"] == 40
    assert s["mean_iou"] == pytest.approx(table["iou"].mean())
    assert s["median_iou"] == pytest.approx(table["iou"].median())
    assert s["p10_iou"] <= s["median_iou"]
    assert s["pooled_iou"] == pytest.approx(M.pooled_iou(table))
    assert s["pooled_dice"] == pytest.approx(M.pooled_dice(table))
    for key in ("mean_dice", "mean_boundary_iou", "mean_precision", "mean_recall"):
        assert 0.0 <= s[key] <= 1.0
    floats = [v for k, v in s.items() if k not in ("n_images", "mean_iou_ci95")] + s["mean_iou_ci95"]
    assert all(type(v) is float for v in floats)


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    table = _per_image_table()
    a = M.summarise(table, n_boot=500, seed=7)
    b = M.summarise(table, n_boot=500, seed=7)
    low, high = a["mean_iou_ci95"]
    assert low < a["mean_iou"] < high
    assert a["mean_iou_ci95"] == b["mean_iou_ci95"]
    assert M.summarise(table, n_boot=500, seed=8)["mean_iou_ci95"] != a["mean_iou_ci95"]


def test_stratified_bootstrap_weighs_groups_equally_and_resamples_each_apart():
    rng = np.random.default_rng(0)
    noisy = rng.uniform(0, 1, 40)
    assert M.stratified_bootstrap_ci([noisy], n_boot=300, seed=3) == M.bootstrap_ci(noisy, n_boot=300, seed=3)
    # a constant group of 500 and one of 2 values: the mean over groups is 0.5 whatever is drawn, while one pool of
    # the 502 values would put it near 0
    assert M.stratified_bootstrap_ci([np.zeros(500), np.ones(2)], n_boot=200) == [0.5, 0.5]
    # each group is resampled apart: a constant second group halves the spread of the first group's alone
    alone = np.diff(M.bootstrap_ci(noisy, n_boot=2000, seed=1))[0]
    paired = np.diff(M.stratified_bootstrap_ci([noisy, np.full(10, 0.3)], n_boot=2000, seed=1))[0]
    assert paired == pytest.approx(alone / 2, rel=1e-9)
    with pytest.raises(ValueError, match="one value per group"):
        M.stratified_bootstrap_ci([noisy, []])


def test_summarise_refuses_missing_columns():
    with pytest.raises(ValueError, match="boundary_iou"):
        M.summarise(_per_image_table().drop(columns="boundary_iou"))


# --- torch batch IoU ------------------------------------------------------------------------------


def test_batch_iou_torch_matches_numpy():
    pred, target = _random_masks(8, 12, 10, seed=3)
    expected = np.array([M.iou(p, t) for p, t in zip(pred, target, strict=True)])
    probs = torch.from_numpy(pred[:, None].astype(np.float32)) * 0.8 + 0.1  # 0.9 inside, 0.1 outside
    target_t = torch.from_numpy(target[:, None])
    logits = torch.logit(probs)
    for out, from_logits in ((logits, True), (probs, False)):
        got = M.batch_iou_torch(out, target_t, from_logits=from_logits)
        assert got.shape == (8,)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert M.batch_iou_torch(probs, target_t.float(), threshold=0.95, from_logits=False)[0] == 1.0


def test_batch_iou_torch_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        M.batch_iou_torch(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))


# --- agreement with segmentation_models_pytorch and torchmetrics ----------------------------------


@pytest.fixture
def smp_stats():
    pred, target = _random_masks(6, 9, 11, seed=5)
    p = torch.from_numpy(pred[:, None].astype(np.int64))
    t = torch.from_numpy(target[:, None].astype(np.int64))
    return pred, target, smp.metrics.get_stats(p, t, mode="binary")


def test_counts_match_smp_get_stats(smp_stats):
    pred, target, (tp, fp, fn, tn) = smp_stats
    ours = np.array([M.confusion(p, t) for p, t in zip(pred, target, strict=True)])
    np.testing.assert_array_equal(ours, torch.cat([tp, fp, fn, tn], dim=1).numpy())


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (M.iou, smp.metrics.iou_score),
        (M.dice, smp.metrics.f1_score),
        (M.precision, smp.metrics.precision),
        (M.recall, smp.metrics.recall),
    ],
)
def test_per_image_scores_match_smp_zero_division_one(smp_stats, ours, theirs):
    pred, target, stats = smp_stats
    per_image = np.array([ours(p, t) for p, t in zip(pred, target, strict=True)])
    np.testing.assert_allclose(theirs(*stats, reduction="none").numpy().ravel(), per_image, rtol=1e-6)
    imagewise = theirs(*stats, reduction="micro-imagewise").item()
    assert imagewise == pytest.approx(per_image.mean())


def test_pooled_matches_smp_micro(smp_stats):
    pred, target, stats = smp_stats
    rows = [M.image_scores(p, t) for p, t in zip(pred, target, strict=True)]
    assert M.pooled_iou(rows) == pytest.approx(smp.metrics.iou_score(*stats, reduction="micro").item())
    assert M.pooled_dice(rows) == pytest.approx(smp.metrics.f1_score(*stats, reduction="micro").item())


def test_torchmetrics_mean_iou_skips_images_with_empty_union():
    pred, target = _random_masks(5, 8, 8, seed=2)  # image 0: both masks empty
    ious = np.array([M.iou(p, t) for p, t in zip(pred, target, strict=True)])
    metric = MeanIoU(num_classes=1, include_background=True, input_format="one-hot")
    metric.update(torch.from_numpy(pred[:, None]).long(), torch.from_numpy(target[:, None]).long())
    assert metric.compute().item() == pytest.approx(ious[1:].mean())  # ours counts image 0 as 1.0
    assert ious.mean() > ious[1:].mean()
