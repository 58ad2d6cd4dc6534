"""seglib.losses: Dice + BCE on logits, each part weighted."""

from __future__ import annotations

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
