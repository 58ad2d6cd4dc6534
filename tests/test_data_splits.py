"""seglib.data.splits: deterministic, stratified, duplicates kept together, committed split matches."""

from __future__ import annotations

import filecmp

import pandas as pd

from seglib import config
from seglib.cli import main
from seglib.data.check import check_dataset
from seglib.data.splits import make_split, read_split, write_split


def test_split_is_deterministic_and_complete(synthetic_dataset, tmp_path):
    report = check_dataset(synthetic_dataset)
    a = make_split(report, seed=3, fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    b = make_split(report, seed=3, fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    pd.testing.assert_frame_equal(a, b)
    assert set(a["split"]) == {"train", "val", "test"}
    assert len(a) == 10 and a["id"].is_unique
    write_split(a, tmp_path / "s1")
    write_split(b, tmp_path / "s2")
    for name in ("train", "val", "test"):
        assert filecmp.cmp(tmp_path / "s1" / f"{name}.csv", tmp_path / "s2" / f"{name}.csv", shallow=False)


def test_duplicate_images_share_a_split(synthetic_dataset):
    img = synthetic_dataset / "Training_Images"
    (img / "2.jpg").write_bytes((img / "1.jpg").read_bytes())
    mask = synthetic_dataset / "Ground_Truth"
    (mask / "2.png").write_bytes((mask / "1.png").read_bytes())
    for seed in range(8):
        table = make_split(check_dataset(synthetic_dataset), seed=seed)
        splits = table.set_index("id")["split"]
        assert splits["1"] == splits["2"]


def test_committed_split_is_reproduced_byte_for_byte(real_dataset, tmp_path, capsys):
    assert main(["data", "split", "--data-dir", str(real_dataset), "--seed", "42", "--out", str(tmp_path)]) == 0
    for name in ("train.csv", "val.csv", "test.csv", "folds.csv"):
        assert filecmp.cmp(tmp_path / name, config.splits_dir() / name, shallow=False), name


def test_committed_split_sizes_and_no_leak():
    parts = {name: read_split(name) for name in ("train", "val", "test")}
    assert [len(parts[n]) for n in ("train", "val", "test")] == [202, 44, 44]
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    together = [name for name, p in parts.items() if {"102", "270"} <= set(p["id"])]
    assert len(together) == 1  # the duplicated photo is never split across train and test
