"""seglib.training.ema: the moving average of the weights, its warm-up, and its saved state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seglib.training.ema import WeightEMA


def test_average_follows_the_formula_with_its_warm_up():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = WeightEMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 2/11)
    d = 2 / 11
    assert ema.module.weight.tolist()[0] == pytest.approx([(1 - d) * 1.0] * 2)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_integer_buffers_are_copied_and_state_round_trips():
    model = nn.BatchNorm1d(3)
    ema = WeightEMA(model, decay=0.99)
    model.num_batches_tracked += 5
    ema.update(model)
    assert int(ema.module.num_batches_tracked) == 5
    again = WeightEMA(model, decay=0.99)
    again.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert again.updates == 1 and torch.equal(again.module.running_mean, ema.module.running_mean)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightEMA(model, decay=1.0)
