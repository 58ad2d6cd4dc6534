"""seglib.io: every kind of image decodes to RGB, or fails with one clear line naming the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from seglib.errors import DataError, SeglibError
from seglib.io import atomic_path, ensure_writable_dir, load_mask_raw, load_rgb, open_image


def test_modes_decode_to_rgb(tmp_path):
    rgb = (np.random.default_rng(0).random((12, 20, 3)) * 255).astype(np.uint8)
    cases = {
        "rgb.jpg": Image.fromarray(rgb),
        "gray.png": Image.fromarray(rgb).convert("L"),
        "rgba.png": Image.fromarray(rgb).convert("RGBA"),
        "palette.png": Image.fromarray(rgb).convert("P"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "sixteen.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        out = load_rgb(tmp_path / name)
        assert out.shape == (12, 20, 3) and out.dtype == np.uint8, name
    sixteen = load_rgb(tmp_path / "sixteen.png")[..., 0]
    assert np.abs(sixteen.astype(int) - rgb[..., 0]).max() <= 1  # 16-bit scaled, not clipped


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20))
    exif = img.getexif()
    exif[274] = 6  # rotate 90 degrees clockwise when shown
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rot.jpg").shape == (40, 20, 3)
    assert load_rgb(tmp_path / "rot.jpg", exif_transpose=False).shape == (20, 40, 3)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not a picture\n" * 10, "not an image"),
        ("missing.png", None, "not found"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_rgb(path)
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text


def test_truncated_jpeg(tmp_path):
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        open_image(tmp_path / "t.jpg")


def test_decompression_bomb_is_refused(tmp_path):
    Image.new("1", (12000, 6000)).save(tmp_path / "bomb.png")  # 72 megapixels, a few kB on disk
    with pytest.raises(DataError, match="too large"):
        load_rgb(tmp_path / "bomb.png")


def test_mask_values_are_kept(tmp_path):
    Image.fromarray(np.array([[0, 255], [128, 0]], np.uint8)).save(tmp_path / "m.png")
    assert load_mask_raw(tmp_path / "m.png").tolist() == [[0, 255], [128, 0]]


def test_atomic_path_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_unwritable_output_folder_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SeglibError, match="not writable"):
        ensure_writable_dir(blocker / "sub")
    assert os.path.isfile(blocker)
