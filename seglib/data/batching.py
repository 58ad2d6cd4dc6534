"""Batches of rectangular inputs (geometry `rect`): photos grouped by input shape, padded to the batch's largest.

`ShapeBatchSampler` orders photos by input aspect so that a batch holds photos of one shape wherever it can
(portrait with portrait, 16:9 with 16:9); `pad_collate` pads whatever still differs to the batch's largest
height and width (image with a black pixel after Normalize, mask with background).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler
from torch.utils.data.dataloader import default_collate


class ShapeBatchSampler(Sampler[list[int]]):
    """Batches of indices whose input shapes (H, W) are equal or neighbours in aspect.

    With `shuffle`, each epoch shuffles within equal shapes and then the order of the batches; it is a function
    of (seed, epoch) alone (`set_epoch`), as the engine's other samplers are. `rank`/`world_size` give each
    process of a distributed run every world_size-th batch (in training, the same number on each).
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be positive")
        self.shapes = [tuple(s) for s in shapes]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        keys = {i: (h / w, h, w, rng.random() if self.shuffle else i) for i, (h, w) in enumerate(self.shapes)}
        if self.drop_last and len(keys) % self.batch_size:  # leave out other photos each epoch, not the widest
            left_out = rng.sample(sorted(keys), len(keys) % self.batch_size) if self.shuffle else \
                sorted(keys)[-(len(keys) % self.batch_size):]
            for i in left_out:
                del keys[i]
        order = sorted(keys, key=keys.__getitem__)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        if self.world_size > 1:  # training: as many steps on every process; evaluation: every photo once
            usable = len(batches) - len(batches) % self.world_size if self.shuffle else len(batches)
            batches = batches[self.rank:usable:self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def pad_collate(items: list[dict], image_fill: Sequence[float] = (0.0, 0.0, 0.0)) -> dict:
    """default_collate after padding every image and mask (and teacher probabilities) at the bottom/right to the
    batch's largest HxW."""
    height = max(item["image"].shape[-2] for item in items)
    width = max(item["image"].shape[-1] for item in items)
    padded = []
    for item in items:
        dh, dw = height - item["image"].shape[-2], width - item["image"].shape[-1]
        if dh or dw:
            fill = torch.tensor(image_fill, dtype=item["image"].dtype)[:, None, None]
            image = F.pad(item["image"] - fill, (0, dw, 0, dh)) + fill
            masks = {key: F.pad(item[key], (0, dw, 0, dh)) for key in ("mask", "teacher") if key in item}
            item = dict(item, image=image, **masks)  # a teacher's probabilities (teacher_masks) pad as background
        padded.append(item)
    return default_collate(padded)
