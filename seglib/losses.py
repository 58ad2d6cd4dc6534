"""Dice + binary cross-entropy loss on logits, weights configurable; Dice pooled over the batch or per image; BCE
weighted up along the mask's edges (`edge_weight`); the Lovász hinge of each image (`lovasz_weight`); mask pixels of
value IGNORE left out of every term; the distillation term toward a teacher's predictions; the L2-SP penalty toward
the starting weights."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
from torch import nn
from torch.nn import functional as F

from seglib.metrics import boundary_width

IGNORE = 255  # a mask value the loss leaves out (`ignore_band`: label edges of automatic labels)
# the logit an ignored pixel gets for Dice: its probability is exactly 0 in float32, so it adds to neither the
# intersection nor the cardinality
_OUT_OF_DICE = -1e4


def per_image_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of each image, averaged over the batch: a small figure weighs as much as a large one
    (as in the mean per-image IoU we report), where batch-pooled Dice is dominated by the large ones."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (probs * target).sum(1)
    cardinality = probs.sum(1) + target.sum(1)
    return 1.0 - ((2.0 * intersection + smooth) / (cardinality + smooth)).mean()


def edge_band(target: torch.Tensor) -> torch.Tensor:
    """1 on the pixels within boundary IoU's band width r (`metrics.boundary_width`: 2% of the diagonal) of an edge
    of the mask, on either side, else 0 (N x 1 x H x W; IGNORE pixels count as background): the pixels whose
    (2r+1)^2 window, within the frame, holds both figure and background, as the mask dilated minus the mask eroded
    by that square. Window counts come from running sums, whose cost does not grow with r (a max-pool's does, r^2)."""
    r = boundary_width(tuple(target.shape[-2:]))
    figure = (target == 1).float()
    in_window = _window_sums(figure, r)
    in_frame = _window_sums(torch.ones_like(figure[:1]), r)
    return ((in_window > 0.5) & (in_window < in_frame - 0.5)).float()


def _window_sums(x: torch.Tensor, r: int) -> torch.Tensor:
    """Each pixel's sum of `x` over its (2r+1)^2 window, zero beyond the frame (whole numbers: exact in float32)."""
    k = 2 * r + 1
    running = F.pad(x, (r + 1, r, 0, 0)).cumsum(-1)
    x = running[..., k:] - running[..., :-k]
    running = F.pad(x, (0, 0, r + 1, r)).cumsum(-2)
    return running[..., k:, :] - running[..., :-k, :]


class DiceBCELoss(nn.Module):
    """`dice_weight * soft Dice + bce_weight * BCE (+ lovasz_weight * Lovász hinge)`, all computed from logits
    (binary masks, N x 1 x H x W).

    `dice_per_image`: Dice of each image, averaged; otherwise smp's Dice, pooled over the batch.
    `edge_weight`: each pixel's BCE weighs `1 + edge_weight` within the band boundary IoU scores (`edge_band`), 1
    elsewhere, normalised by the weights' sum, so the BCE term keeps its scale and its attention moves to the edges.
    `lovasz_weight`: smp's Lovász hinge of each image, averaged (Berman, Rannen Triki and Blaschko, CVPR 2018): a
    convex surrogate of 1 - IoU, per image as our mean IoU per photo is; IGNORE pixels left out.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, *, dice_per_image: bool = False,
                 edge_weight: float = 0.0, lovasz_weight: float = 0.0):
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.dice_per_image = dice_per_image
        self.edge_weight = edge_weight
        self.lovasz_weight = lovasz_weight
        self.dice = DiceLoss(mode="binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()
        self.lovasz = LovaszLoss(mode="binary", per_image=True, ignore_index=IGNORE)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.dice_and_bce(logits, target)
        if self.lovasz_weight:  # in float32: the hinge sorts the errors, which half precision would tie
            loss = loss + self.lovasz_weight * self.lovasz(logits.float(), target)
        return loss

    def dice_and_bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The Dice and BCE terms, IGNORE pixels left out of both."""
        ignored = target == IGNORE
        any_ignored = bool(ignored.any())
        if any_ignored or self.edge_weight:  # only then: a plain mask is scored exactly as before
            return self.weighted(logits, target, ignored if any_ignored else None)
        loss = logits.new_zeros(())
        if self.dice_weight:
            dice = per_image_dice_loss(logits, target) if self.dice_per_image else self.dice(logits, target)
            loss = loss + self.dice_weight * dice
        if self.bce_weight:
            loss = loss + self.bce_weight * self.bce(logits, target)
        return loss

    def weighted(self, logits: torch.Tensor, target: torch.Tensor, ignored: torch.Tensor | None) -> torch.Tensor:
        """The loss with the `ignored` pixels (None: none) left out: Dice over the others, BCE their mean, weighted
        up along the mask's edges when `edge_weight` is set."""
        weight = (~ignored).float() if ignored is not None else torch.ones_like(target)
        if self.edge_weight:
            weight = weight * (1.0 + self.edge_weight * edge_band(target))
        if ignored is not None:
            target, hidden = target.masked_fill(ignored, 0), logits.masked_fill(ignored, _OUT_OF_DICE)
        else:
            hidden = logits
        loss = logits.new_zeros(())
        if self.dice_weight:
            dice = per_image_dice_loss(hidden, target) if self.dice_per_image else self.dice(hidden, target)
            loss = loss + self.dice_weight * dice
        if self.bce_weight:
            bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
            loss = loss + self.bce_weight * bce / weight.sum().clamp_min(1.0)
        return loss

    @classmethod
    def for_config(cls, cfg) -> DiceBCELoss:
        """The loss a TrainConfig describes."""
        return cls(cfg.dice_weight, cfg.bce_weight, dice_per_image=cfg.dice_per_image, edge_weight=cfg.edge_weight,
                   lovasz_weight=cfg.lovasz_weight)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the predictions against a teacher's probabilities (soft targets): the
    regulariser that keeps a fine-tuned network close to what the pretrained one predicted on the same photo."""
    return soft_target_loss(logits, torch.sigmoid(teacher_logits.float()))


def soft_target_loss(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the predictions against probabilities (a teacher's, computed or cached)."""
    return F.binary_cross_entropy_with_logits(logits.float(), probabilities.float())


class StartingPointPenalty(nn.Module):
    """L2-SP (Li, Grandvalet and Davoine, ICML 2018): `weight`/2 x the squared distance of the parameters that have a
    starting value (`start`: name -> tensor) from it; zero at the start, growing as the weights move away."""

    def __init__(self, start: dict[str, torch.Tensor], weight: float):
        super().__init__()
        self.names = list(start)
        self.weight = weight
        for i, name in enumerate(self.names):  # buffers: they follow the model's device, are not trained or saved
            self.register_buffer(f"start_{i}", start[name].detach().clone(), persistent=False)

    def forward(self, model: nn.Module) -> torch.Tensor:
        parameters = dict(model.named_parameters())
        total = None
        for i, name in enumerate(self.names):
            moved = (parameters[name].float() - getattr(self, f"start_{i}").float()).pow(2).sum()
            total = moved if total is None else total + moved
        if total is None:
            return torch.zeros(())
        return 0.5 * self.weight * total
