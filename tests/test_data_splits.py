"""seglib.data.splits: deterministic, stratified, duplicates kept together, committed split matches."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pandas as pd
import pytest

from seglib.cli import main
from seglib.data.check import check_dataset
from seglib.data.snapshot import snapshot_splits
from seglib.data.splits import make_split, read_split, split_fingerprint, write_split
from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.locks import LockedError, exclusive, lock_path

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}  # the synthetic set's 10 photos leave none in val at 15%


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
        table = make_split(check_dataset(synthetic_dataset), seed=seed, fractions=FRACTIONS)
        splits = table.set_index("id")["split"]
        assert splits["1"] == splits["2"]


def test_committed_split_is_reproduced_byte_for_byte(real_dataset, tmp_path, capsys):
    assert main(["data", "split", "--data-dir", str(real_dataset), "--seed", "42", "--out", str(tmp_path)]) == 0
    for name in ("train.csv", "val.csv", "test.csv", "folds.csv"):
        assert filecmp.cmp(tmp_path / name, paths.splits_dir() / name, shallow=False), name


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
    table = make_split(check_dataset(synthetic_dataset), seed=0, fractions=FRACTIONS)
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
    table = make_split(check_dataset(synthetic_dataset), seed=0, fractions=FRACTIONS)
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


# ------------------------------------------------------------------------------------------- sets of any layout and size


def _add(tmp_path, monkeypatch, capsys, name: str, *source: str) -> None:
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    assert main(["data", "add", name, *source]) == 0, capsys.readouterr().err
    capsys.readouterr()


@pytest.mark.parametrize("layout", ["csv-with-dotdot-paths", "folder-of-links"])
def test_a_set_listed_through_dotdot_paths_or_links_splits_and_reads_back_the_same_photos(tmp_path, monkeypatch,
                                                                                         capsys, layout):
    from conftest import photo_folders

    from seglib.data.descriptions import get
    from seglib.data.registry import check_registered
    from seglib.data.selection import open_sets

    images, masks = photo_folders(tmp_path / "store", n=16)
    if layout == "csv-with-dotdot-paths":  # the CSV beside the photos' folder, the masks with the photos
        for mask in masks.iterdir():
            mask.rename(images / f"{mask.stem}_m.png")
        listing = tmp_path / "store" / "lists" / "pairs.csv"
        listing.parent.mkdir()
        listing.write_text("image,mask\n" + "".join(f"../images/{p.name},../images/{p.stem}_m.png\n"
                                                    for p in sorted(images.glob("*.jpg"))))
        _add(tmp_path, monkeypatch, capsys, "mine", "--pairs", str(listing))
    else:  # a folder of links to the photos
        links = tmp_path / "links"
        links.mkdir()
        for photo in images.iterdir():
            (links / photo.name).symlink_to(photo)
        _add(tmp_path, monkeypatch, capsys, "mine", "--images", str(links), "--masks", str(masks))
    code = main(["data", "split", "mine", "--folds", "2"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    pairs = get("mine").pair_set().items.set_index("id")
    root = check_registered("mine").dataset_dir
    sets = open_sets("mine")
    for split in ("train", "val", "test"):
        table = read_split(split, get("mine").splits_dir())
        for row in table.itertuples(index=False):  # the split names each file relative to the set's root
            assert (root / row.image).samefile(pairs.loc[row.id, "image_path"])
            assert (root / row.mask).samefile(pairs.loc[row.id, "mask_path"])
        read = sets.table(split).set_index("id")
        assert [read.loc[i, "image_path"] for i in table["id"]] == [str(pairs.loc[i, "image_path"])
                                                                   for i in table["id"]]


@pytest.mark.parametrize(("n", "folds", "said"), [
    (1, "0", "1 photo is too few to split: a train/val/test split (15% each for val and test, per quarter of "
             "foreground fraction) leaves the val and test split empty and needs at least 13 photos; add photos"),
    (1, "5", "1 photo is too few to split: a train/val/test split (15% each for val and test, per quarter of "
             "foreground fraction) leaves the val and test split empty and needs at least 13 photos; folds=5 needs "
             "at least 5 photos in train and val; add photos"),
    (14, "13", "folds=13: more folds than the 12 train+val photo groups; use --folds 12 or fewer, or add photos"),
], ids=["1-photo-no-folds", "1-photo-5-folds", "14-photos-13-folds"])
def test_a_set_too_small_to_split_says_how_many_photos_it_has_and_needs(tmp_path, monkeypatch, capsys, n, folds,
                                                                         said):
    from conftest import make_dataset, photo_folders

    images, masks = photo_folders(tmp_path / "few", n=n)
    _add(tmp_path, monkeypatch, capsys, "few", "--images", str(images), "--masks", str(masks))
    code = main(["data", "split", "few", "--folds", folds])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and said in line and "few.yaml" in line, line
    assert not (tmp_path / "data" / "splits" / "few").exists()
    if n == 1:  # the built-in set's layout too
        folder = make_dataset(tmp_path / "raw", n=1)
        code = main(["data", "split", "--data-dir", str(folder), "--out", str(tmp_path / "s"), "--folds", folds])
        line = _one_line_error(capsys.readouterr().err)
        assert code == 2 and f"{folder}: {said}" in line and not (tmp_path / "s").exists()
