"""seglib.losses: Dice + BCE on logits, each part weighted."""

from __future__ import annotations

import torch

from seglib.losses import DiceBCELoss


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
