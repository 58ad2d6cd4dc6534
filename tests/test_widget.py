"""seglib.widget: the try-it callback and the widget's wiring, without a browser (a tiny untrained model)."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
from conftest import draw_pair, save_tiny_checkpoint
from PIL import Image

from seglib.predict import Predictor, overlay_mask
from seglib.widget import UPLOAD_NAME, TryIt, try_photo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def predictor(tmp_path):
    return Predictor.from_checkpoint(save_tiny_checkpoint(tmp_path / "tiny.pt"), threshold=0.5)


@pytest.fixture
def photo(tmp_path):
    image, _ = draw_pair(np.random.default_rng(3), 90, 60)
    path = tmp_path / "person.jpg"
    image.save(path, quality=95)
    return path


def upload_value(name: str, content: bytes) -> tuple[dict, ...]:
    """What ipywidgets' FileUpload holds after the browser sent one file."""
    return ({"name": name, "type": "image/jpeg", "size": len(content), "content": memoryview(content),
             "last_modified": dt.datetime.now(dt.UTC)},)


def test_a_photo_gives_its_mask_overlay_time_and_message(predictor, photo):
    result = try_photo(predictor, photo)
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    assert result.ok and result.name == "person.jpg"
    np.testing.assert_array_equal(result.image, rgb)
    assert result.mask.shape == (60, 90) and set(np.unique(result.mask)) <= {0, 1}
    np.testing.assert_array_equal(result.mask, predictor.predict_mask(rgb))
    np.testing.assert_array_equal(result.overlay, overlay_mask(rgb, result.mask))
    assert result.ms > 0
    assert result.message.startswith("person.jpg: 90x60, person on ") and "ms (threshold 0.5)" in result.message
    assert "\n" not in result.message


def test_uploaded_bytes_give_the_same_mask_as_the_file(predictor, photo):
    by_path = try_photo(predictor, photo)
    uploaded = try_photo(predictor, memoryview(photo.read_bytes()), "../elsewhere/mine.jpg")
    assert uploaded.ok and uploaded.name == "mine.jpg"
    np.testing.assert_array_equal(uploaded.mask, by_path.mask)
    assert try_photo(predictor, photo.read_bytes()).name == UPLOAD_NAME


def test_a_phone_s_heic_upload_is_offered_read_and_turned_as_its_file_says(predictor, photo, tmp_path):
    assert {".heic", ".heif", ".avif"} <= set(TryIt(predictor, {}).upload.accept.split(","))
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[274] = 6  # held upright: stored 90x60, shown 60x90
    Image.open(photo).save(tmp_path / "IMG_0042.HEIC", exif=exif.tobytes())
    uploaded = try_photo(predictor, (tmp_path / "IMG_0042.HEIC").read_bytes(), "IMG_0042.HEIC")
    assert uploaded.ok and uploaded.mask.shape == (90, 60) and uploaded.message.startswith("IMG_0042.HEIC: 60x90")


@pytest.mark.parametrize(("content", "says"), [(b"just some notes", "not an image"), (b"", "empty file"),
                                                (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "not an image")])
def test_a_file_that_is_not_an_image_gives_one_line_and_no_mask(predictor, tmp_path, content, says):
    result = try_photo(predictor, content, "notes.txt")
    assert not result.ok and result.mask is None and result.overlay is None and result.ms is None
    assert result.message.startswith("notes.txt: ") and says in result.message
    assert "\n" not in result.message and "seglib-tryit" not in result.message  # no temporary path shown
    (tmp_path / "notes.txt").write_bytes(content)
    assert try_photo(predictor, tmp_path / "notes.txt").message == result.message
    assert "file not found" in try_photo(predictor, tmp_path / "missing.jpg").message


def test_the_widget_shows_a_chosen_photo_then_an_upload_then_a_bad_file(predictor, photo):
    tryit = TryIt(predictor, {"test photo 1": photo})
    assert [label for label, _ in tryit.choose.options] == ["choose a photo", "test photo 1"]
    assert "application/vnd.jupyter.widget-view+json" in tryit._repr_mimebundle_()
    tryit.choose.value = str(photo)
    assert tryit.last.ok and tryit.message.value == tryit.last.message
    assert bytes(tryit.overlay.value).startswith(PNG_SIGNATURE) and bytes(tryit.mask.value).startswith(PNG_SIGNATURE)
    shown = np.asarray(Image.open(io.BytesIO(bytes(tryit.mask.value))))
    np.testing.assert_array_equal(shown, tryit.last.mask * 255)
    tryit.upload.value = upload_value("holiday.jpg", photo.read_bytes())
    assert tryit.last.ok and tryit.last.name == "holiday.jpg" and tryit.message.value.startswith("holiday.jpg: 90x60")
    tryit.upload.value = upload_value("notes.txt", b"not a photo")
    assert not tryit.last.ok and tryit.message.value.startswith("notes.txt: not an image")
    assert bytes(tryit.overlay.value) == b"" and bytes(tryit.mask.value) == b""


def test_the_widget_shows_the_cutout_and_the_background_replaced_at_the_photos_size(predictor, photo):
    tryit = TryIt(predictor, {"test photo 1": photo})
    tryit.choose.value = str(photo)
    result = tryit.last
    assert result.cutout.shape == (*result.image.shape[:2], 4) and result.composite.shape == result.image.shape
    assert ((result.cutout[..., 3] >= 128) == result.mask.astype(bool)).mean() > 0.99
    overlay = bytes(tryit.overlay.value)
    tryit.view.value = "cut-out"
    assert np.asarray(Image.open(io.BytesIO(bytes(tryit.overlay.value)))).shape[2] == 4  # RGBA on the page
    tryit.background.value = "white"  # a new background is drawn at once, and shown
    assert tryit.view.value == "new background" and bytes(tryit.overlay.value) != overlay
    shown = np.asarray(Image.open(io.BytesIO(bytes(tryit.overlay.value))))
    outside = tryit.last.cutout[..., 3] == 0  # where the cut-out is transparent, the new background is all there is
    assert shown.shape[:2] == outside.shape and (shown[outside] == 255).all()
