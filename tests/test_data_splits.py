"""seglib.data.splits: deterministic, stratified, duplicates kept together, committed split matches."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pandas as pd
import pytest

from seglib import config
from seglib.cli import main
from seglib.data.check import check_dataset
from seglib.data.snapshot import snapshot_splits
from seglib.data.splits import make_split, read_split, split_fingerprint, write_split
from seglib.errors import DataError, SeglibError
from seglib.locks import LockedError, exclusive, lock_path


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


# ------------------------------------------------------------------------------------------- writing never lands on input


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("seglib: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_refuses_to_write_into_the_data_set_folder(synthetic_dataset, capsys):
    before = _tree(synthetic_dataset)
    code = main(["data", "split", "--data-dir", str(synthetic_dataset), "--out", str(synthetic_dataset),
                 "--overwrite", "--folds", "0"])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "the data set folder being split" in line and "even with --overwrite" in line
    assert "different split" not in line  # the pair listing is not "a split" to be replaced
    assert _tree(synthetic_dataset) == before
    code = main(["data", "split", "--data-dir", str(synthetic_dataset), "--out",
                 str(synthetic_dataset / "Ground_Truth"), "--folds", "0"])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and f"is inside {synthetic_dataset}, the data set folder being split" in line
    assert _tree(synthetic_dataset) == before


def test_split_refuses_the_data_folder_named_by_the_environment(synthetic_dataset, monkeypatch, capsys):
    root = synthetic_dataset.parent  # holds the data set folder, as data/raw does
    monkeypatch.setenv("SEGLIB_DATA_DIR", str(root))
    before = _tree(root)
    code = main(["data", "split", "--out", str(root), "--folds", "0"])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "the data folder it is read from" in line and str(root) in line
    assert _tree(root) == before and not (root / "train.csv").exists()
    assert check_dataset().ok  # the data set is still found and fine


def test_write_split_never_replaces_a_pair_listing_or_another_file_even_with_overwrite(synthetic_dataset, tmp_path):
    table = make_split(check_dataset(synthetic_dataset), seed=0)
    listing = tmp_path / "copy"
    listing.mkdir()
    (listing / "train.csv").write_text("masks,images\na/m.png,a/i.jpg\n")  # a pair listing, not a split
    with pytest.raises(SeglibError, match="is a data set folder") as info:
        write_split(table, listing, overwrite=True)
    assert "different split" not in str(info.value)
    assert (listing / "train.csv").read_text() == "masks,images\na/m.png,a/i.jpg\n"
    with pytest.raises(SeglibError, match="is inside .*, a data set folder"):
        write_split(table, synthetic_dataset / "splits", overwrite=True)
    assert not (synthetic_dataset / "splits").exists()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "val.csv").write_text("name,score\nx,1\n")
    with pytest.raises(DataError, match="val.csv: not a split file"):
        write_split(table, notes, overwrite=True)
    assert (notes / "val.csv").read_text() == "name,score\nx,1\n" and not (notes / "train.csv").exists()


def test_writing_a_splits_folder_holds_its_lock(synthetic_dataset, tmp_path):
    table = make_split(check_dataset(synthetic_dataset), seed=0)
    out = tmp_path / "splits"
    with exclusive(out, "test holder"):
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            write_split(table, out)
    assert not out.exists()
    assert write_split(table, out) and not lock_path(out).exists()  # released after writing
    with exclusive(out, "test holder"):  # `--out .` and a link to the folder take the same lock
        (tmp_path / "link").symlink_to(out)
        with pytest.raises(LockedError):
            write_split(table, tmp_path / "link", overwrite=True)


def test_split_with_a_negative_seed_is_one_line(synthetic_dataset, tmp_path, capsys):
    code = main(["data", "split", "--data-dir", str(synthetic_dataset), "--out", str(tmp_path / "s"), "--seed", "-1"])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "seed -1: expected a whole number 0 or more" in line
    assert not (tmp_path / "s").exists()


def test_a_split_row_listed_twice_is_refused_naming_the_lines(synthetic_splits):
    _, splits = synthetic_splits
    path = splits / "test.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")  # the first photo again at the end
    first_id = lines[1].split(",")[0]
    with pytest.raises(DataError, match=rf"id {first_id} is listed 2 times \(lines 2, {len(lines) + 1}\)"):
        read_split("test", splits)


# ------------------------------------------------------------------------------------------- one version per reader


def test_snapshot_refuses_a_split_rewritten_while_it_is_read(synthetic_splits, monkeypatch):
    _, splits = synthetic_splits
    import seglib.data.snapshot as snap

    reads = []
    original = snap._read_files

    def rewritten_between_the_two_reads(folder):
        files = original(folder)
        if not reads:  # after the first read, another process replaces val.csv
            (folder / "val.csv").write_text((folder / "train.csv").read_text())
        reads.append(folder)
        return files

    monkeypatch.setattr(snap, "_read_files", rewritten_between_the_two_reads)
    with pytest.raises(DataError, match="val.csv changed while it was being read"):
        snap.snapshot_splits(splits)


def test_snapshot_refuses_while_a_writer_holds_the_folder(synthetic_splits):
    _, splits = synthetic_splits
    with exclusive(splits, "a writer"):
        with pytest.raises(DataError, match=f"being rewritten by pid {os.getpid()}"):
            snapshot_splits(splits)
    snapshot = snapshot_splits(splits)  # released: read, and its tables are read_split's
    pd.testing.assert_frame_equal(snapshot.table("val"), read_split("val", splits))
    assert snapshot.fingerprint() == split_fingerprint(splits)
