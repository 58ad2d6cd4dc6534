"""seglib.data.dataset: items, mask-resolution loading, seeded augmentation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from seglib.data.dataset import SegmentationDataset, load_pair
from seglib.transforms.pipelines import eval_transform, train_transform


def test_load_pair_resizes_image_to_mask_size(synthetic_dataset):
    image, mask = load_pair(synthetic_dataset / "Training_Images" / "3.jpg", synthetic_dataset / "Ground_Truth" / "3.png")
    with Image.open(synthetic_dataset / "Ground_Truth" / "3.png") as m:
        assert mask.shape == (m.height, m.width)
    assert image.shape == (*mask.shape, 3) and image.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}


def test_items_have_the_documented_form(synthetic_splits):
    folder, splits = synthetic_splits
    ds = SegmentationDataset.from_split("train", folder, splits, transform=eval_transform(32))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert isinstance(item["id"], str)
    h, w = item["orig_size"].tolist()
    assert (h, w) == ds.load(0)[1].shape


def test_grayscale_image_becomes_rgb(synthetic_dataset, synthetic_splits):
    folder, splits = synthetic_splits
    path = folder / "Training_Images" / "1.jpg"
    Image.open(path).convert("L").save(path)
    image, _ = load_pair(path, folder / "Ground_Truth" / "1.png")
    assert image.shape[2] == 3


def test_augmentation_is_seeded_per_epoch_and_index(synthetic_splits):
    folder, splits = synthetic_splits
    make = lambda: SegmentationDataset.from_split("train", folder, splits, transform=train_transform(32), seed=5)  # noqa: E731
    a, b = make(), make()
    assert torch.equal(a[1]["image"], b[1]["image"])
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], b[1]["image"])
    b.set_epoch(1)
    assert torch.equal(a[1]["mask"], b[1]["mask"])


def test_real_dataset_items(real_dataset):
    ds = SegmentationDataset.from_split("val", real_dataset, transform=eval_transform(64), limit=3)
    for i in range(3):
        item = ds[i]
        assert item["image"].shape == (3, 64, 64)
        assert item["mask"].sum() > 0


def test_persistent_workers_follow_the_epoch_like_the_main_process(synthetic_splits):
    """Training loaders keep their workers between epochs; each epoch's augmentation must still change."""
    from seglib.profiles import make_config
    from seglib.training.loaders import make_loaders, set_epoch
    from seglib.training.runtime import Runtime

    folder, splits = synthetic_splits
    batches = {}
    for workers in (0, 2):
        cfg = make_config("smoke", {"num_workers": workers, "input_size": 32, "limit_train": 6, "batch_size": 3,
                                    "augment": "standard"})
        loader, _ = make_loaders(cfg, Runtime(torch.device("cpu")), folder, splits)
        assert loader.persistent_workers == (workers > 0)
        for epoch in (1, 2):
            set_epoch(loader, cfg, epoch)
            batches[workers, epoch] = torch.cat([b["image"] for b in loader])
    assert not torch.equal(batches[0, 1], batches[0, 2])
    for epoch in (1, 2):
        assert torch.equal(batches[0, epoch], batches[2, epoch])
