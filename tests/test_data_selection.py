"""Which photos train a run and which may score it: decided by the photos' bytes as well as their ids (#35 case 3)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import photo_folders

from seglib.cli import main
from seglib.infra.errors import DataError


@pytest.fixture
def registry_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "data"


def _errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("seglib: error:")]


def _add_and_split(capsys, name: str, images, masks, seed: int) -> None:
    assert main(["data", "add", name, "--images", str(images), "--masks", str(masks)]) == 0
    assert main(["data", "split", name, "--folds", "0", "--seed", str(seed)]) == 0
    capsys.readouterr()


def test_a_copy_of_a_set_under_another_name_cannot_train_beside_it(registry_dirs, tmp_path, capsys):
    """`--set data=syn,syndup` with syndup a byte copy of syn split another way: val and test would hold photos
    that train; refused in one line before anything is written."""
    images, masks = photo_folders(tmp_path / "syn", n=16)
    copy = tmp_path / "syndup"
    shutil.copytree(tmp_path / "syn", copy)
    _add_and_split(capsys, "syn", images, masks, seed=0)
    _add_and_split(capsys, "syndup", copy / "images", copy / "masks", seed=1)
    code = main(["train", "--run", "both", "--profile", "smoke", "--set", "data=syn,syndup"])
    [line] = _errors(capsys)
    assert code == 2 and "same bytes" in line and "data=syn,syndup" in line
    assert not (tmp_path / "runs" / "both").exists()


def test_copies_within_one_split_are_allowed_and_across_splits_refused_naming_both(tmp_path):
    from seglib.data.selection import check_apart_by_content

    photos = []
    for name, content in (("a", b"1"), ("b", b"1"), ("c", b"2"), ("d", b"2")):
        (tmp_path / f"{name}.jpg").write_bytes(content)
        photos.append(str(tmp_path / f"{name}.jpg"))
    table = lambda ids: pd.DataFrame({"id": ids, "image_path": [str(tmp_path / f"{i}.jpg") for i in ids]})  # noqa: E731
    check_apart_by_content({"train": table(["a", "b"]), "val": table(["c", "d"])}, "x")  # copies inside one split
    with pytest.raises(DataError, match=r"1 test photo\(s\) have the same bytes .*d = c \(val\)"):
        check_apart_by_content({"train": table(["a"]), "val": table(["c"]), "test": table(["d"])}, "x")


def test_test_photos_whose_bytes_trained_the_model_are_refused_under_any_id(synthetic_splits, tmp_path,
                                                                          monkeypatch, capsys):
    """A training photo copied under a new id into test.csv: `evaluate --split test` refuses it by its bytes."""
    folder, splits = synthetic_splits
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    common = ["--data-dir", str(folder), "--splits-dir"]
    assert main(["train", "--profile", "smoke", "--run", "r", "--set", "input_size=32", *common, str(splits)]) == 0
    train = pd.read_csv(splits / "train.csv", dtype=str)
    row = train.iloc[0]
    shutil.copy(folder / row["image"], folder / "Training_Images" / "copy.jpg")
    shutil.copy(folder / row["mask"], folder / "Ground_Truth" / "copy.png")
    moved = tmp_path / "moved"
    shutil.copytree(splits, moved)
    test = pd.read_csv(splits / "test.csv", dtype=str)
    extra = row.to_frame().T.assign(id="copy", image="Training_Images/copy.jpg", mask="Ground_Truth/copy.png")
    pd.concat([test, extra]).to_csv(moved / "test.csv", index=False)
    capsys.readouterr()
    code = main(["evaluate", "--run", "r", "--split", "test", "--quiet", *common, str(moved)])
    [line] = _errors(capsys)
    assert code == 2 and "same bytes" in line and "copy" in line and "test.csv" in line
    assert not (tmp_path / "runs" / "r" / "eval" / "test").exists()


def test_a_set_whose_copy_trained_the_model_is_refused_without_advising_the_same_command(registry_dirs, tmp_path,
                                                                                         capsys):
    """`evaluate --dataset syn` of a model trained on syndup (syn's photos under another name): refused by the
    photos' bytes, and the line no longer advises `--dataset syn`, the command that was just refused."""
    images, masks = photo_folders(tmp_path / "syn", n=16)
    shutil.copytree(tmp_path / "syn", tmp_path / "syndup")
    _add_and_split(capsys, "syn", images, masks, seed=0)
    _add_and_split(capsys, "syndup", tmp_path / "syndup" / "images", tmp_path / "syndup" / "masks", seed=1)
    assert main(["train", "--run", "r", "--profile", "smoke", "--set", "data=syndup"]) == 0
    capsys.readouterr()
    code = main(["evaluate", "--run", "r", "--dataset", "syn", "--quiet"])
    [line] = _errors(capsys)
    assert code == 2 and "same bytes" in line and "--dataset syn" not in line
