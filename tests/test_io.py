"""seglib.infra.io: every kind of image decodes to RGB, or fails with one clear line naming the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import atomic_path, ensure_writable_dir, load_mask_raw, load_rgb, open_image


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


def test_a_phone_s_heic_photo_and_an_avif_decode_as_viewers_show_them(tmp_path):
    """HEIC (most phones' photo format) is read through pillow-heif, which seglib registers with Pillow: the
    file's rotation is applied like a JPEG's EXIF orientation. AVIF Pillow reads itself."""
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white: shown turned 90 degrees clockwise, the top half is white
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[274] = 6
    Image.fromarray(rgb).save(tmp_path / "phone.HEIC", exif=exif.tobytes(), quality=95)
    shown = load_rgb(tmp_path / "phone.HEIC")
    assert shown.shape == (40, 20, 3)
    assert shown[:16].mean() > 200 and shown[24:].mean() < 50
    Image.fromarray(rgb).save(tmp_path / "web.avif", quality=95)
    assert load_rgb(tmp_path / "web.avif").shape == (20, 40, 3)


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


# ------------------------------------------------------------------------------------------- masks by an explicit rule


def test_a_colour_mask_is_refused_naming_the_file_and_its_colours(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 2] = 255  # blue background
    rgb[2:8, 3:7] = 255  # a white person
    Image.fromarray(rgb).save(tmp_path / "blue.png")
    with pytest.raises(DataError) as info:
        load_mask_raw(tmp_path / "blue.png")
    text = str(info.value)
    assert str(tmp_path / "blue.png") in text and "colour mask (2 colours" in text and "\n" not in text
    assert "(0,0,255) 76%" in text and "(255,255,255) 24%" in text


def test_grey_palette_and_one_bit_masks_read_as_before(tmp_path):
    values = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(np.repeat(values[..., None], 3, axis=2)).save(tmp_path / "grey_rgb.png")  # R == G == B
    Image.fromarray(values).convert("1").save(tmp_path / "bits.png")
    Image.fromarray(values).convert("P").save(tmp_path / "palette.png")
    pal = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])  # instance ids with colours, as Penn-Fudan's masks
    pal.save(tmp_path / "ids.png")
    for name in ("grey_rgb.png", "bits.png", "palette.png"):
        assert load_mask_raw(tmp_path / name).tolist() == values.tolist(), name
    assert load_mask_raw(tmp_path / "ids.png").tolist() == [[0, 128], [128, 0]]  # brightest channel, as before


# ------------------------------------------------------------------------------------------- wide TIFFs


def test_float_tiffs_are_scaled_by_their_range_not_decoded_black(tmp_path):
    photo = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    Image.fromarray(photo).save(tmp_path / "photo.tif")
    assert load_rgb(tmp_path / "photo.tif")[..., 0].tolist() == [[0, 128], [255, 64]]
    Image.fromarray(np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)).save(tmp_path / "mask01.tif")
    assert load_mask_raw(tmp_path / "mask01.tif").tolist() == [[0, 255], [255, 0]]
    Image.fromarray(np.array([[0.0, 255.0], [255.0, 0.0]], np.float32)).save(tmp_path / "mask255.tif")
    assert load_mask_raw(tmp_path / "mask255.tif").tolist() == [[0, 255], [255, 0]]


def test_int32_tiffs_are_scaled_or_refused_never_saturated(tmp_path):
    Image.fromarray(np.array([[0, 65535], [32896, 0]], np.int32)).save(tmp_path / "sixteen.tif")
    assert load_rgb(tmp_path / "sixteen.tif")[..., 0].tolist() == [[0, 255], [128, 0]]
    assert load_mask_raw(tmp_path / "sixteen.tif").tolist() == [[0, 255], [128, 0]]
    Image.fromarray(np.array([[0, 70000], [100, 0]], np.int32)).save(tmp_path / "wide.tif")
    for load in (load_rgb, load_mask_raw):
        with pytest.raises(DataError) as info:
            load(tmp_path / "wide.tif")
        text = str(info.value)
        assert str(tmp_path / "wide.tif") in text and "values from 0 to 70000" in text and "\n" not in text
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match="NaN or infinite"):
        load_rgb(tmp_path / "nan.tif")


# ------------------------------------------------------------------------------------------- what the path is


def test_a_fifo_is_not_called_an_empty_file(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError) as info:
        load_rgb(fifo)  # must not block on opening the pipe
    assert str(info.value) == f"{fifo}: is a named pipe (FIFO), not an image file"


def test_a_symlink_loop_and_a_broken_link_are_named_as_such(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(DataError) as info:
        open_image(loop)
    assert "symbolic link loop" in str(info.value) and "not found" not in str(info.value)
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"broken symbolic link \(it points to .*gone.png, which does not exist\)"):
        open_image(broken)
