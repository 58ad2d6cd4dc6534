"""seglib.predict.inputs: what a folder scan takes, and what it says of what it leaves out."""

from __future__ import annotations

import numpy as np
from PIL import Image

from seglib.predict.inputs import collect_inputs


def test_a_folder_scan_names_each_symlink_loop_and_broken_link_it_leaves_out(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    (folder / "gone.txt").symlink_to(tmp_path / "deleted.txt")  # not named like a photo: not a candidate
    (folder / ".hidden.png").symlink_to(tmp_path / "deleted.png")
    notes: list[str] = []
    assert [p.name for p in collect_inputs([folder], warn=notes.append)] == ["a.png"]
    assert notes == [f"seglib: note: {folder}: left out 2 links that lead to no file: gone.png (broken link to "
                     f"{tmp_path / 'deleted.png'}), loop.jpg (symbolic link loop)"]
