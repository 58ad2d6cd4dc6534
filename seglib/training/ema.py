"""Exponential moving average of a model's weights (evaluated and saved in place of the raw weights)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from seglib.checkpoint import unwrap


class WeightEMA:
    """Shadow copy updated after every optimiser step: `ema = d * ema + (1 - d) * weights`.

    The decay ramps up as `min(decay, (1 + n) / (10 + n))` over the first updates, so the average is not
    dominated by the random initialisation on short runs. Floating-point buffers (batch-norm statistics) are
    averaged too; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict, weights: dict) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(weights)

