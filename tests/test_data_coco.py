"""COCO imports (`seglib data add NAME --coco FILE --images DIR`): the folder the masks go to is never one the
command did not make, each `file_name` is a photo inside --images and pairs with its own mask, image ids are
checked both ways, and a bad field is one line naming the JSON and the entry, never a traceback."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_folders
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_data_registry import run_cli

from seglib.data import descriptions
from seglib.data.coco import rasterise_coco
from seglib.infra.errors import DataError

H, W = 72, 56
BOX = [5, 5, 30, 5, 30, 40, 5, 40]  # a polygon person


@pytest.fixture
def registry_dirs(tmp_path, monkeypatch):
    """Descriptions, derived masks and splits of added sets under tmp_path/data."""
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "data"


def _photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def _coco_json(path: Path, file_names=(), *, images=None, annotations=None) -> Path:
    """A COCO file: one image per file name (ids 1, 2, ...), each with a polygon person (annotation ids 10, 11...)
    unless `images` or `annotations` are given."""
    if images is None:
        images = [{"id": i + 1, "file_name": name, "height": H, "width": W} for i, name in enumerate(file_names)]
    if annotations is None:
        annotations = [{"id": 10 + i, "image_id": image["id"], "category_id": 1, "segmentation": [BOX]}
                       for i, image in enumerate(images)]
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ the derived folder (issue 35.1)


@pytest.mark.parametrize("case", ["photos-in-the-derived-folder", "a-user-folder-there", "photos-inside-it",
                                  "photos-around-it", "the-json-inside-it", "another-sets-photos-inside-it"])
def test_data_add_never_deletes_a_folder_it_did_not_make(registry_dirs, tmp_path, capsys, case):
    derived = registry_dirs / "derived" / "cox"
    images = {"photos-in-the-derived-folder": derived, "photos-inside-it": derived / "photos",
              "photos-around-it": registry_dirs / "derived"}.get(case, tmp_path / "photos")
    names = [f"s{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        _photo(images / name, seed=i)
    coco = _coco_json((derived if case == "the-json-inside-it" else tmp_path) / "good.json", names)
    named = [str(derived)]
    if case == "a-user-folder-there":
        derived.mkdir(parents=True)
        (derived / "notes.txt").write_text("mine")
    if case == "another-sets-photos-inside-it":  # cox added, unregistered by hand; a set bb keeps photos in its folder
        assert run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", images)[0] == 0
        (registry_dirs / "datasets" / "cox.yaml").unlink()
        other, other_masks = photo_folders(derived / "bb", n=3, scale_every=0)
        assert run_cli(capsys, "data", "add", "bb", "--images", other, "--masks", other_masks)[0] == 0
        named.append("'bb'")
    before = _files(tmp_path)
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", images)
    assert code == 2, out
    assert err.startswith("seglib: error: ") and len(err.strip().splitlines()) == 1
    assert all(text in err for text in named), err
    assert not (registry_dirs / "datasets" / "cox.yaml").exists()
    after = _files(tmp_path)
    assert {p: after.get(p) for p in before} == before  # nothing deleted or changed
    assert not list((registry_dirs / "derived").glob(".cox.adding*"))


def test_data_add_replaces_a_mask_folder_it_made(registry_dirs, tmp_path, capsys):
    names = ["s0.jpg", "s1.jpg"]
    for i, name in enumerate(names):
        _photo(tmp_path / "photos" / name, seed=i)
    coco = _coco_json(tmp_path / "good.json", names)
    assert run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", tmp_path / "photos")[0] == 0
    (registry_dirs / "datasets" / "cox.yaml").unlink()
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", tmp_path / "photos")
    assert code == 0, err
    assert "registered cox: 2 pairs" in out


# ------------------------------------------------------------------------------ file names (issue 35.5)


@pytest.mark.parametrize("case", ["dot-dot", "absolute", "symlink"])
def test_a_file_name_leading_outside_the_photo_folder_is_refused(registry_dirs, tmp_path, capsys, case):
    images = tmp_path / "mine" / "img"
    outside = _photo(tmp_path / "other" / "img" / "s0.jpg", seed=1)
    _photo(images / "s0.jpg", seed=2)  # a different photo with the same stem
    _photo(images / "s1.jpg", seed=3)
    name = {"dot-dot": "../../other/img/s0.jpg", "absolute": str(outside), "symlink": "link/s0.jpg"}[case]
    if case == "symlink":
        (images / "link").symlink_to(outside.parent)
    coco = _coco_json(tmp_path / "mine" / "good.json", [name, "s1.jpg"])
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", images)
    assert code == 2, out
    assert err.startswith(f"seglib: error: {coco}: image 1") and len(err.strip().splitlines()) == 1
    assert name in err and "outside" in err
    assert not (registry_dirs / "datasets" / "cox.yaml").exists()


@pytest.mark.parametrize("case", ["beside-another-s0", "only-in-subfolders"])
def test_a_file_name_in_a_subfolder_pairs_with_that_photo(registry_dirs, tmp_path, capsys, case):
    images = tmp_path / "img"
    listed = _photo(images / "a" / "s0.jpg", seed=1)
    _photo(images / "a" / "s1.jpg", seed=3)
    if case == "beside-another-s0":
        _photo(images / "s0.jpg", seed=2)  # another photo with the same stem, not in the file
    coco = _coco_json(tmp_path / "good.json", ["a/s0.jpg", "a/s1.jpg"])
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", images)
    assert code == 0, err
    assert "registered cox: 2 pairs" in out
    items = descriptions.get("cox").pair_set().items.set_index("id")
    assert sorted(items.index) == ["s0", "s1"]
    assert Path(items.loc["s0", "image_path"]).resolve() == listed.resolve()
    assert run_cli(capsys, "data", "check", "cox")[0] == 0
    _photo(images / "b" / "s0.jpg", seed=4)
    twice = _coco_json(tmp_path / "twice.json", ["a/s0.jpg", "b/s0.jpg"])
    code, out, err = run_cli(capsys, "data", "add", "two", "--coco", twice, "--images", images)
    assert code == 2 and "share the file stem 's0'" in err


def test_an_unlisted_photo_is_named_with_the_json_not_a_temporary_folder(registry_dirs, tmp_path, capsys):
    images, _ = photo_folders(tmp_path / "coco", n=3, scale_every=0)
    coco = _coco_json(tmp_path / "good.json", ["p00.jpg", "p01.jpg"])
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", images)
    assert code == 2, out
    assert err.startswith(f"seglib: error: {images / 'p02.jpg'}: ") and len(err.strip().splitlines()) == 1
    assert str(coco) in err and ".adding-" not in err


# ------------------------------------------------------------------------------ image ids (issue 35.7)


@pytest.mark.parametrize("case", ["two-images-one-id", "a-person-of-no-image", "a-dog-of-no-image"])
def test_image_ids_are_checked_both_ways(tmp_path, case):
    _photo(tmp_path / "img" / "s0.jpg")
    _photo(tmp_path / "img" / "s1.jpg", seed=1)
    images = [{"id": 1, "file_name": "s0.jpg", "height": H, "width": W},
              {"id": 1 if case == "two-images-one-id" else 2, "file_name": "s1.jpg", "height": H, "width": W}]
    annotations = [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [BOX]}]
    if case != "two-images-one-id":
        annotations.append({"id": 11, "image_id": 7, "category_id": 1 if case == "a-person-of-no-image" else 2,
                            "segmentation": [BOX]})
    coco = _coco_json(tmp_path / "c.json", images=images, annotations=annotations)
    with pytest.raises(DataError) as info:
        rasterise_coco(coco, tmp_path / "img", tmp_path / "out")
    text = str(info.value)
    assert text.startswith(f"{coco}: ") and "\n" not in text
    expected = ["image id 1", "s0.jpg", "s1.jpg"] if case == "two-images-one-id" else ["annotation 11", "image_id 7"]
    assert all(word in text for word in expected), text


# ------------------------------------------------------------------------------ bad fields (issue 35.16)

_FULL = H * W


def _bad(case: str, data: dict) -> str:
    """Spoil one field of a valid file; returns the entry the message must name."""
    image, ann = data["images"][0], data["annotations"][0]
    if case.startswith(("height", "width")):
        key, value = case.split("-", 1)
        image[key] = {"abc": "abc", "null": None, "zero": 0, "half": 72.5, "true": True}[value]
        return "image 1"
    if case == "image-not-an-object":
        data["images"][0] = "s0.jpg"
        return "images[0]"
    if case == "image-id-a-list":
        image["id"] = [1]
        return "images[0]"
    if case == "category-id-a-list":
        ann["category_id"] = [1]
        return "annotation 10"
    segmentation = {
        "rle-negative-count": {"size": [H, W], "counts": [-1, _FULL + 1]},
        "rle-counts-too-few": {"size": [H, W], "counts": [5, 6]},
        "rle-count-a-float": {"size": [H, W], "counts": [0.5, _FULL - 0.5]},
        "rle-size-not-the-image": {"size": [H + 1, W], "counts": [_FULL + W]},
        "rle-size-text": {"size": "72x56", "counts": [_FULL]},
        "rle-string-garbage": {"size": [H, W], "counts": "\x7f\x7f"},
        "rle-string-too-short": {"size": [H, W], "counts": "52"},
        "polygon-text": [["a", 1, 2, 3, 4, 5]],
        "polygon-odd": [[1, 1, 20, 1, 20, 20, 1]],
        "polygon-nan": [[0, 0, math.nan, 0, 3, 3]],
        "polygon-huge": [[0, 0, 1e300, 0, 1e300, 1e300]],
        "segmentation-a-number": 7,
    }[case]
    ann["segmentation"] = segmentation
    return "annotation 10"


@pytest.mark.parametrize("case", ["height-abc", "height-null", "width-zero", "height-half", "width-true",
                                  "image-not-an-object", "image-id-a-list", "category-id-a-list",
                                  "rle-negative-count", "rle-counts-too-few", "rle-count-a-float",
                                  "rle-size-not-the-image", "rle-size-text", "rle-string-garbage",
                                  "rle-string-too-short", "polygon-text", "polygon-odd", "polygon-nan",
                                  "polygon-huge", "segmentation-a-number"])
def test_a_bad_field_is_one_line_naming_the_json_and_the_entry(registry_dirs, tmp_path, capsys, case):
    _photo(tmp_path / "img" / "s0.jpg")
    coco = _coco_json(tmp_path / "c.json", ["s0.jpg"])
    data = json.loads(coco.read_text())
    where = _bad(case, data)
    coco.write_text(json.dumps(data))
    code, out, err = run_cli(capsys, "data", "add", "cox", "--coco", coco, "--images", tmp_path / "img")
    assert code == 2, out
    assert err.startswith(f"seglib: error: {coco}: {where}") and len(err.strip().splitlines()) == 1, err
    assert not (registry_dirs / "datasets" / "cox.yaml").exists()


def test_compressed_rle_reads_as_pycocotools_encodes_it(tmp_path):
    from pycocotools import mask as coco_mask

    _photo(tmp_path / "img" / "s0.jpg")
    person = np.zeros((H, W), np.uint8)
    person[3:60, 7:50] = 1
    person[20:30, 20:22] = 0
    counts = coco_mask.encode(np.asfortranarray(person))["counts"].decode()
    coco = _coco_json(tmp_path / "c.json", ["s0.jpg"], annotations=[
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": {"size": [H, W], "counts": counts}}])
    rasterise_coco(coco, tmp_path / "img", tmp_path / "out")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "s0.png")) > 127, person.astype(bool))


# ------------------------------------------------------------------------------ garbage in every field

_GARBAGE = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(), st.text(max_size=6),
                     st.lists(st.integers(-3, 5000), max_size=6), st.lists(st.floats(), max_size=6),
                     st.dictionaries(st.sampled_from(["size", "counts", "id"]), st.integers(-3, 99), max_size=2))
_FIELDS = [("images", None), ("annotations", None), ("categories", None), ("image", "id"), ("image", "file_name"),
           ("image", "height"), ("image", "width"), ("image", None), ("annotation", "id"),
           ("annotation", "image_id"), ("annotation", "category_id"), ("annotation", "segmentation"),
           ("annotation", None), ("polygon", 0), ("polygon", 3), ("polygon", None), ("rle", "size"),
           ("rle", "counts"), ("compressed", "counts"), ("category", "id"), ("category", "name")]


def _valid_coco() -> dict:
    from pycocotools import mask as coco_mask

    person = np.zeros((H, W), np.uint8, order="F")
    person[10:50, 10:40] = 1
    compressed = coco_mask.encode(person)["counts"].decode()
    return {"images": [{"id": 1, "file_name": "s0.jpg", "height": H, "width": W},
                       {"id": 2, "file_name": "s1.jpg", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [list(BOX)]},
                            {"id": 11, "image_id": 1, "category_id": 1,
                             "segmentation": {"size": [H, W], "counts": [_FULL - 100, 100]}},
                            {"id": 12, "image_id": 2, "category_id": 1,
                             "segmentation": {"size": [H, W], "counts": compressed}}]}


def _spoil(data: dict, field: tuple, value) -> None:
    """Put `value` in one field (a field an earlier spoiling took away is left alone)."""
    where, key = field
    if key is None and where in data:
        data[where] = value
        return
    try:
        _spoil_entry(data, where, key, value)
    except (TypeError, IndexError, KeyError, AttributeError):
        pass


def _spoil_entry(data: dict, where: str, key, value) -> None:
    target = {"image": data["images"][0], "annotation": data["annotations"][0], "category": data["categories"][0],
              "polygon": data["annotations"][0]["segmentation"], "rle": data["annotations"][1]["segmentation"],
              "compressed": data["annotations"][2]["segmentation"]}[where]
    if where == "polygon":
        if key is None:
            target[0] = value
        else:
            target[0][key] = value
    elif key is None:
        data[f"{where}s"][0] = value
    else:
        target[key] = value


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    for i in range(2):
        _photo(folder / f"s{i}.jpg", seed=i)
    return folder


@settings(max_examples=60, deadline=None)
@given(spoiled=st.lists(st.tuples(st.sampled_from(_FIELDS), _GARBAGE), min_size=1, max_size=3))
def test_garbage_in_any_coco_field_is_a_data_error_or_a_mask(two_photos, spoiled):
    data = _valid_coco()
    for field, value in spoiled:
        _spoil(data, field, value)
    with tempfile.TemporaryDirectory() as work:
        coco = Path(work) / "c.json"
        coco.write_text(json.dumps(data))
        try:
            rasterise_coco(coco, two_photos, Path(work) / "out")
        except DataError as exc:
            assert "\n" not in str(exc)
