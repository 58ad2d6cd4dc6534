"""Dice + binary cross-entropy loss on logits, weights configurable; Dice pooled over the batch or per image;
the distillation term toward a frozen teacher's predictions."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn
from torch.nn import functional as F


def per_image_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of each image, averaged over the batch: a small figure weighs as much as a large one
    (as in the mean per-image IoU we report), where batch-pooled Dice is dominated by the large ones."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (probs * target).sum(1)
    cardinality = probs.sum(1) + target.sum(1)
    return 1.0 - ((2.0 * intersection + smooth) / (cardinality + smooth)).mean()


class DiceBCELoss(nn.Module):
    """`dice_weight * soft Dice + bce_weight * BCE`, both computed from logits (binary masks, N x 1 x H x W).

    `dice_per_image`: Dice of each image, averaged; otherwise smp's Dice, pooled over the batch.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, *, dice_per_image: bool = False):
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.dice_per_image = dice_per_image
        self.dice = DiceLoss(mode="binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = logits.new_zeros(())
        if self.dice_weight:
            dice = per_image_dice_loss(logits, target) if self.dice_per_image else self.dice(logits, target)
            loss = loss + self.dice_weight * dice
        if self.bce_weight:
            loss = loss + self.bce_weight * self.bce(logits, target)
        return loss

    @classmethod
    def for_config(cls, cfg) -> DiceBCELoss:
        """The loss a TrainConfig describes."""
        return cls(cfg.dice_weight, cfg.bce_weight, dice_per_image=cfg.dice_per_image)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the predictions against a teacher's probabilities (soft targets): the
    regulariser that keeps a fine-tuned network close to what the pretrained one predicted on the same photo."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.sigmoid(teacher_logits.float()))
