"""seglib.data.catalog: finding the data set folder and resolving train.csv's paths safely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seglib.data.catalog import find_dataset_dir, read_pairs_csv, resolve_listed_path
from seglib.infra.errors import DataError


def test_listed_paths_resolve_inside_folder_whatever_its_name(synthetic_dataset, tmp_path):
    renamed = tmp_path / "Human-Segmentation-Dataset-master-master"
    shutil.copytree(synthetic_dataset, renamed)
    pairs, problems = read_pairs_csv(renamed)
    assert not problems
    assert all(Path(p).is_file() and renamed in Path(p).parents for p in pairs["image_path"])


@pytest.mark.parametrize("listed", ["../etc/passwd", "x/../../secret.png", "/etc/passwd"])
def test_paths_leading_outside_are_refused(tmp_path, listed):
    with pytest.raises(DataError, match="outside|absolute"):
        resolve_listed_path(tmp_path, listed)


def test_find_dataset_dir_accepts_parent_folder(synthetic_dataset):
    assert find_dataset_dir(synthetic_dataset.parent) == synthetic_dataset


def test_missing_data_set_says_how_to_fetch_it(tmp_path):
    with pytest.raises(DataError, match="no train.csv here or in a sub-folder"):
        find_dataset_dir(tmp_path)
