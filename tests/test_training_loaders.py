"""Training reads one version of its split, and never validates on training photos (training.loaders.make_loaders)."""

from __future__ import annotations

import pytest
import torch

from seglib.data.dataset import SegmentationDataset
from seglib.infra.errors import DataError
from seglib.profiles import make_config
from seglib.training.loaders import make_loaders
from seglib.training.runtime import Runtime

TINY = {"base_channels": 4, "depth": 2, "input_size": 32, "cache_max_side": 64, "batch_size": 3, "limit_train": 0,
        "limit_val": 0, "augment": "light", "epochs": 1, "threads": 1}
CPU = Runtime(torch.device("cpu"))


def _config(**changes):
    return make_config("smoke", {**TINY, **changes})


def test_training_refuses_a_val_split_identical_to_train(synthetic_splits):
    folder, splits = synthetic_splits
    (splits / "val.csv").write_text((splits / "train.csv").read_text())
    n = len((splits / "train.csv").read_text().splitlines()) - 1
    with pytest.raises(DataError) as info:
        make_loaders(_config(), CPU, folder, splits)
    text = str(info.value)
    assert text.startswith(f"{splits}/val.csv: {n} of its {n} photos") and f"also in {splits}/train.csv" in text
    assert "best epoch would be chosen on training photos" in text and "\n" not in text


def test_training_refuses_a_val_split_overlapping_train(synthetic_splits):
    folder, splits = synthetic_splits
    train_rows = (splits / "train.csv").read_text().splitlines()
    with open(splits / "val.csv", "a") as fh:
        fh.write(train_rows[1] + "\n")  # one training photo also validates
    with pytest.raises(DataError, match=rf"1 of its \d+ photos \(ids {train_rows[1].split(',')[0]}\) are also in"):
        make_loaders(_config(), CPU, folder, splits)


def test_a_refit_on_train_and_val_is_not_refused(synthetic_splits):
    folder, splits = synthetic_splits
    train_loader, val_loader = make_loaders(_config(train_on="train+val"), CPU, folder, splits)
    assert set(val_loader.dataset.items["id"]) <= set(train_loader.dataset.items["id"])  # by design


def test_training_refuses_a_split_rewritten_while_its_photos_are_read(synthetic_splits, monkeypatch):
    folder, splits = synthetic_splits
    real_preload = SegmentationDataset.preload

    def rewritten_meanwhile(self):
        real_preload(self)
        (splits / "test.csv").write_text((splits / "test.csv").read_text() + "\n")  # `data split --overwrite`

    monkeypatch.setattr(SegmentationDataset, "preload", rewritten_meanwhile)
    with pytest.raises(DataError, match="test.csv changed while the training data was being read"):
        make_loaders(_config(), CPU, folder, splits)


def test_the_datasets_carry_the_one_version_they_were_read_from(synthetic_splits):
    from seglib.data.splits import split_fingerprint

    folder, splits = synthetic_splits
    train_loader, val_loader = make_loaders(_config(), CPU, folder, splits)
    snapshot = train_loader.dataset.split_snapshot
    assert val_loader.dataset.split_snapshot is snapshot and snapshot.fingerprint() == {**split_fingerprint(splits), "datasets": ["human-seg"]}
