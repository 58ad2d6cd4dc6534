"""seglib.losses: Dice + BCE on logits, each part weighted."""

from __future__ import annotations

import pytest
import torch

from seglib.losses import DiceBCELoss, distillation_loss


def test_confident_right_logits_cost_little_and_wrong_ones_a_lot():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    right = (target * 2 - 1) * 20
    loss = DiceBCELoss()
    assert loss(right, target).item() < 1e-3
    assert loss(-right, target).item() > 10


def test_weights_select_the_parts():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    logits = torch.zeros(1, 1, 4, 4)
    bce_only = DiceBCELoss(dice_weight=0, bce_weight=1)(logits, target).item()
    dice_only = DiceBCELoss(dice_weight=1, bce_weight=0)(logits, target).item()
    both = DiceBCELoss(dice_weight=2, bce_weight=3)(logits, target).item()
    assert abs(bce_only - torch.log(torch.tensor(2.0)).item()) < 1e-6
    assert abs(both - (2 * dice_only + 3 * bce_only)) < 1e-5


def test_per_image_dice_weighs_a_small_figure_like_a_large_one():
    target = torch.zeros(2, 1, 16, 16)
    target[0, :, :, :] = 1  # a photo filled by its figure
    target[1, :, 7:9, 7:9] = 1  # a small figure
    logits = (target * 2 - 1) * 20
    logits[1] = -20  # the small figure missed entirely
    pooled = DiceBCELoss(1.0, 0.0)(logits, target).item()
    per_image = DiceBCELoss(1.0, 0.0, dice_per_image=True)(logits, target).item()
    assert pooled < 0.02  # the miss is 4 of 260 foreground pixels
    assert 0.35 < per_image < 0.55  # one of the two photos is entirely wrong (Dice 0.2 with smoothing 1)


def test_per_image_dice_of_a_perfect_prediction_is_zero_even_for_an_empty_mask():
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 30
    assert DiceBCELoss(1.0, 0.0, dice_per_image=True)(logits, target).item() < 1e-3


def test_distillation_pulls_toward_the_teachers_probabilities():
    teacher = torch.randn(2, 1, 8, 8) * 3
    logits = torch.zeros_like(teacher, requires_grad=True)
    distillation_loss(logits, teacher).backward()
    assert torch.allclose(logits.grad, (0.5 - torch.sigmoid(teacher)) / teacher.numel())  # toward the teacher
    same = teacher.clone().requires_grad_(True)
    distillation_loss(same, teacher).backward()
    assert same.grad.abs().max() < 1e-7  # at the teacher's own predictions there is nothing to pull
    assert distillation_loss(teacher, teacher) < distillation_loss(-teacher, teacher)


def test_the_edge_band_is_boundary_ious_width_on_both_sides_of_the_edge():
    from seglib.losses import edge_band
    from seglib.metrics import boundary_width

    target = torch.zeros(1, 1, 100, 100)
    target[..., :, :50] = 1  # a straight vertical edge between columns 49 and 50
    band = edge_band(target)[0, 0]
    r = boundary_width((100, 100))
    assert r == 3
    columns = band[50].nonzero().flatten().tolist()
    assert columns == list(range(50 - r, 50 + r))  # r pixels of figure, r of background
    assert edge_band(torch.ones(1, 1, 100, 100)).sum() == 0  # no edge, no band: the frame is not an edge


def test_the_edge_band_is_the_mask_dilated_minus_the_mask_eroded():
    from torch.nn import functional as F

    from seglib.losses import IGNORE, edge_band
    from seglib.metrics import boundary_width

    torch.manual_seed(0)
    target = (F.interpolate(torch.rand(3, 1, 6, 9), size=(90, 130)) > 0.5).float()  # blocks touching the frame
    target[0, 0, :5, :5] = IGNORE
    r = boundary_width((90, 130))
    figure = (target == 1).float()
    dilated = F.max_pool2d(figure, 2 * r + 1, stride=1, padding=r)
    eroded = 1 - F.max_pool2d(1 - figure, 2 * r + 1, stride=1, padding=r)
    assert torch.equal(edge_band(target), dilated - eroded)


def test_edge_weight_moves_the_bce_toward_mistakes_on_the_edges():
    target = torch.zeros(1, 1, 100, 100)
    target[..., :, :50] = 1
    right = (target * 2 - 1) * 20
    wrong_at_edge, wrong_far = right.clone(), right.clone()
    wrong_at_edge[..., 50] = 20  # the first background column called figure
    wrong_far[..., 95] = 20  # a background column far from the edge called figure
    plain, edges = DiceBCELoss(0, 1), DiceBCELoss(0, 1, edge_weight=4.0)
    assert torch.allclose(plain(wrong_at_edge, target), plain(wrong_far, target))  # the same error, the same loss
    assert edges(wrong_at_edge, target) > 3 * edges(wrong_far, target)
    assert torch.allclose(edges(right, target), plain(right, target), atol=1e-6)  # right everywhere: ~0 either way


def _wrong_only_where_ignored() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits right everywhere but along the mask's edge; the mask, and the mask with that edge IGNORE."""
    from seglib.losses import IGNORE

    target = torch.zeros(1, 1, 40, 40)
    target[..., :, :20] = 1
    logits = (target * 2 - 1) * 20
    logits[..., 20] = 20  # wrong along the edge...
    hidden = target.clone()
    hidden[..., 20] = IGNORE  # ...where the label is ignored
    return logits, target, hidden


def test_edge_weight_keeps_ignored_pixels_out():
    logits, _, hidden = _wrong_only_where_ignored()
    assert DiceBCELoss(0, 1, edge_weight=4.0)(logits, hidden).item() < 1e-6


def test_the_lovasz_term_is_smps_per_image_hinge_and_falls_as_each_image_s_iou_rises():
    from segmentation_models_pytorch.losses import LovaszLoss

    torch.manual_seed(0)
    target = (torch.rand(3, 1, 24, 24) > 0.5).float()
    logits = torch.randn(3, 1, 24, 24)
    lovasz = DiceBCELoss(0, 0, lovasz_weight=2.0)
    expected = LovaszLoss(mode="binary", per_image=True)(logits, target)
    assert lovasz(logits, target).item() == pytest.approx(2.0 * expected.item(), rel=1e-6)
    assert DiceBCELoss(1, 1, lovasz_weight=2.0)(logits, target).item() == pytest.approx(
        DiceBCELoss(1, 1)(logits, target).item() + 2.0 * expected.item(), rel=1e-6)
    # the hinge is 0 when every pixel is right by a margin, and larger the more of one image is wrong
    right = (target * 2 - 1) * 5
    assert lovasz(right, target).item() == pytest.approx(0.0, abs=1e-6)
    one_wrong = right.clone()
    one_wrong[0, :, :12] *= -1
    assert lovasz(one_wrong, target).item() > lovasz(right, target).item() + 0.1


def test_the_lovasz_term_leaves_ignored_pixels_out():
    logits, target, hidden = _wrong_only_where_ignored()
    loss = DiceBCELoss(0, 0, lovasz_weight=1.0)
    assert loss(logits, hidden).item() < 1e-6 < loss(logits, target).item()
