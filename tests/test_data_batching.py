"""seglib.data.batching: batches of one input shape where possible, reproducible per (seed, epoch); padding."""

from __future__ import annotations

import pytest
import torch

from seglib.data.batching import ShapeBatchSampler, pad_collate

PORTRAIT, LANDSCAPE, WIDE = (64, 48), (48, 64), (32, 64)


def shapes(portrait=8, landscape=8, wide=4):
    return [PORTRAIT] * portrait + [LANDSCAPE] * landscape + [WIDE] * wide


def test_batches_hold_one_shape_when_the_counts_allow():
    sampler = ShapeBatchSampler(shapes(), 4, shuffle=True, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(20))  # every photo once
        assert all(len({sampler.shapes[i] for i in b}) == 1 for b in batches)
        assert len(batches) == len(sampler) == 5


def test_order_is_a_function_of_seed_and_epoch():
    def order(seed, epoch):
        sampler = ShapeBatchSampler(shapes(), 4, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(1, 2) == order(1, 2)
    assert order(1, 2) != order(1, 3) and order(1, 2) != order(2, 2)
    assert list(ShapeBatchSampler(shapes(), 4)) == list(ShapeBatchSampler(shapes(), 4))  # evaluation: fixed


def test_drop_last_leaves_out_different_photos_each_epoch():
    sampler = ShapeBatchSampler(shapes(8, 7, 2), 4, shuffle=True, drop_last=True, seed=0)
    left_out = []
    for epoch in range(12):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4 and all(len(b) == 4 for b in batches)
        left_out.append(frozenset(range(17)) - {i for b in batches for i in b})
    assert all(len(x) == 1 for x in left_out) and len(set(left_out)) > 3


def test_the_widest_photos_are_trained_on():
    sampler = ShapeBatchSampler(shapes(8, 7, 2), 4, shuffle=True, drop_last=True, seed=0)
    seen = set()
    for epoch in range(10):
        sampler.set_epoch(epoch)
        seen |= {i for b in sampler for i in b}
    assert {15, 16} <= seen


def test_processes_of_a_distributed_run_share_the_batches():
    parts = [ShapeBatchSampler(shapes(), 4, shuffle=True, seed=0, rank=r, world_size=2) for r in (0, 1)]
    a, b = (list(p) for p in parts)
    assert len(a) == len(b) == 2  # of 5 batches: as many steps on each process
    assert not {i for x in a for i in x} & {i for x in b for i in x}
    evaluation = [ShapeBatchSampler(shapes(), 4, rank=r, world_size=2) for r in (0, 1)]
    assert sorted(i for p in evaluation for batch in p for i in batch) == list(range(20))  # every photo once


def test_pad_collate_pads_to_the_largest_with_the_fill():
    items = [{"image": torch.ones(3, 4, 2), "mask": torch.ones(1, 4, 2), "id": "a"},
             {"image": torch.ones(3, 2, 4), "mask": torch.ones(1, 2, 4), "id": "b"}]
    batch = pad_collate(items, image_fill=(-1.0, -2.0, -3.0))
    assert batch["image"].shape == (2, 3, 4, 4) and batch["mask"].shape == (2, 1, 4, 4)
    assert batch["id"] == ["a", "b"]
    assert batch["image"][0, :, :, 2:].flatten(1).unique(dim=1).T.tolist() == [[-1.0, -2.0, -3.0]]
    assert batch["mask"][0, 0, :, 2:].sum() == 0 and batch["mask"][0].sum() == 8
    assert batch["image"][1, :, :2].min() == 1 and batch["image"][1, 0, 2:].unique().tolist() == [-1.0]


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size=0"):
        ShapeBatchSampler(shapes(), 0)
