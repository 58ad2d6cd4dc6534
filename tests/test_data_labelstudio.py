"""A Label Studio JSON export read back as a data set (`seglib data add NAME --labelstudio FILE --images DIR`):
brush and polygon regions, photos found by their task's path or URL, unlabelled tasks left out, EXIF-rotated
photos, and every bad export refused in one line with nothing registered."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import photo_folders
from PIL import Image

from seglib.cli import main
from seglib.data import descriptions
from seglib.data.brush import encode_mask
from seglib.data.labelstudio import shown_orientation, stored_orientation


@pytest.fixture
def registry_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    return tmp_path / "data"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def truth(masks, stem: str) -> np.ndarray:
    return (np.asarray(Image.open(masks / f"{stem}.png")) > 127).astype(np.uint8)


def brush(mask: np.ndarray, label: str = "person") -> dict:
    h, w = mask.shape
    return {"from_name": "person_brush", "to_name": "image", "type": "brushlabels", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": encode_mask(mask), "brushlabels": [label]}}


def task(task_id: int, image: str, results: list | None, **data) -> dict:
    """A task as Label Studio exports it (results None: nobody labelled it)."""
    annotations = [] if results is None else [{"id": task_id, "result": results, "was_cancelled": False,
                                                "ground_truth": False, "updated_at": "2026-01-01T00:00:00Z"}]
    return {"id": task_id, "data": {"image": image, **data}, "annotations": annotations, "predictions": []}


def write_export(path, tasks) -> str:
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return str(path)


def added_mask(registry_dirs, name: str, stem: str) -> np.ndarray:
    return (np.asarray(Image.open(registry_dirs / "derived" / name / f"{stem}.png")) > 127).astype(np.uint8)


def test_brush_and_polygon_regions_of_each_labelled_task_become_its_mask(registry_dirs, tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "set", n=4, scale_every=0)
    square = [[10, 10], [30, 10], [30, 40], [10, 40]]  # percent of the 56x72 photo
    polygon = {"type": "polygonlabels", "original_width": 56, "original_height": 72,
               "value": {"points": square, "polygonlabels": ["Person"]}}
    tasks = [task(1, "/data/upload/3/0a1b2c3d-p00.jpg", [brush(truth(masks, "p00"))]),  # an upload's renamed photo
             task(2, "/data/local-files/?d=shots/set/images/p01.jpg", [brush(truth(masks, "p01")), polygon]),
             task(3, "http://127.0.0.1:8000/p02.jpg", None),  # nobody labelled it yet
             task(4, "ignored.jpg", [{"type": "choices", "value": {"choices": ["outdoor"]}}], seglib_photo="p03.jpg")]
    code, out, err = run_cli(capsys, "data", "add", "ls", "--labelstudio", write_export(tmp_path / "ls.json", tasks),
                             "--images", images)
    assert code == 0, err
    assert "registered ls: 3 pairs" in out and "p02.jpg (not labelled yet)" in out
    assert np.array_equal(added_mask(registry_dirs, "ls", "p00"), truth(masks, "p00"))
    drawn = added_mask(registry_dirs, "ls", "p01")  # the brush's mask plus the square (x 5.6-16.8, y 7.2-28.8)
    inside, around = np.zeros((72, 56), np.uint8), np.zeros((72, 56), np.uint8)
    inside[9:28, 7:16] = 1
    around[6:31, 4:19] = 1
    assert (drawn >= truth(masks, "p01")).all() and (drawn >= inside).all()
    assert not (drawn & ~(truth(masks, "p01") | around).astype(bool)).any()
    assert added_mask(registry_dirs, "ls", "p03").sum() == 0  # labelled, no person: a valid empty mask
    spec = descriptions.get("ls")
    assert (spec.kind, spec.n_pairs) == ("labelstudio", 3) and spec.labelstudio.endswith("ls.json")
    assert "--labelstudio" in spec.add_command()
    assert run_cli(capsys, "data", "check", "ls")[0] == 0


def test_the_ground_truth_annotation_is_read_else_the_last_updated_and_skipped_tasks_are_left_out(
        registry_dirs, tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "set", n=3, scale_every=0)
    empty = np.zeros((72, 56), np.uint8)
    first = task(1, "p00.jpg", [brush(truth(masks, "p00"))])
    first["annotations"].append({"id": 9, "result": [brush(empty)], "ground_truth": False,
                                 "updated_at": "2025-01-01T00:00:00Z"})  # older
    second = task(2, "p01.jpg", [brush(empty)])
    second["annotations"].append({"id": 8, "result": [brush(truth(masks, "p01"))], "ground_truth": True,
                                  "updated_at": "2020-01-01T00:00:00Z"})
    skipped = task(3, "p02.jpg", [brush(truth(masks, "p02"))])
    skipped["annotations"][0]["was_cancelled"] = True
    code, out, err = run_cli(capsys, "data", "add", "gt", "--labelstudio",
                             write_export(tmp_path / "e.json", [first, second, skipped]), "--images", images)
    assert code == 0, err
    assert "p02.jpg (skipped in Label Studio)" in out
    assert np.array_equal(added_mask(registry_dirs, "gt", "p00"), truth(masks, "p00"))
    assert np.array_equal(added_mask(registry_dirs, "gt", "p01"), truth(masks, "p01"))


def test_a_mask_drawn_over_an_exif_rotated_photo_is_turned_back_to_its_stored_pixels(registry_dirs, tmp_path,
                                                                                     capsys):
    images, masks = photo_folders(tmp_path / "set", n=1, scale_every=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it a quarter clockwise
    Image.open(images / "p00.jpg").save(images / "p00.jpg", exif=exif, quality=95)
    shown = shown_orientation(truth(masks, "p00"), 6)
    assert shown.shape == (56, 72)  # what Label Studio's browser shows, and measures regions on
    code, _, err = run_cli(capsys, "data", "add", "rot", "--labelstudio",
                           write_export(tmp_path / "e.json", [task(1, "p00.jpg", [brush(shown)])]), "--images", images)
    assert code == 0, err
    assert np.array_equal(added_mask(registry_dirs, "rot", "p00"), truth(masks, "p00"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_turning_a_mask_as_shown_and_back_is_the_identity(orientation):
    from PIL import ImageOps

    mask = (np.random.default_rng(orientation).random((5, 7)) > 0.5).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = Image.fromarray(mask)
    picture.info["exif"] = exif.tobytes()
    assert np.array_equal(shown_orientation(mask, orientation), np.asarray(ImageOps.exif_transpose(picture)))
    assert np.array_equal(stored_orientation(shown_orientation(mask, orientation), orientation), mask)


BAD = {
    "unknown-label": ("labelled 'car', not 'person'", lambda m: [task(1, "p00.jpg", [brush(m, "car")])]),
    "missing-image": ("its photo 'http://host/gone.jpg' is not in", lambda m: [task(1, "http://host/gone.jpg",
                                                                                    [brush(m)])]),
    "missing-seglib-photo": ("its photo 'gone.jpg' (seglib_photo) is not in",
                             lambda m: [task(1, "p00.jpg", [brush(m)], seglib_photo="gone.jpg")]),
    "wrong-size": ("drawn on a 56x56 image, but the photo is 56x72", lambda m: [task(1, "p00.jpg", [
        {**brush(m[:56]), "original_height": 56}])]),
    "rectangle": ("a rectanglelabels region; seglib reads person regions drawn with the brush or as polygons",
                  lambda m: [task(1, "p00.jpg", [{"type": "rectanglelabels", "value": {"rectanglelabels": ["person"]}}])]),
    "truncated-rle": ("rle ends in the middle of its code", lambda m: [task(1, "p00.jpg", [
        {**brush(m), "value": {"format": "rle", "rle": encode_mask(m)[:-3], "brushlabels": ["person"]}}])]),
    "two-tasks-one-photo": ("task 1 and task 2 label the same photo", lambda m: [task(1, "p00.jpg", [brush(m)]),
                                                                               task(2, "p00.jpg", [brush(m)])]),
    "nothing-labelled": ("none of its 1 tasks is labelled", lambda m: [task(1, "p00.jpg", None)]),
    "json-min": ("tasks[0] has no data", lambda m: [{"image": "p00.jpg", "tag": []}]),
    "not-a-list": ("not a Label Studio JSON export (a list of tasks)", lambda m: {"tasks": []}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_export_is_one_line_naming_the_file_and_nothing_is_registered(registry_dirs, tmp_path, capsys, case):
    images, masks = photo_folders(tmp_path / "set", n=1, scale_every=0)
    expected, tasks = BAD[case]
    export = write_export(tmp_path / "bad.json", tasks(truth(masks, "p00")))
    code, out, err = run_cli(capsys, "data", "add", "bad", "--labelstudio", export, "--images", images)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err and "bad.json" in err, err
    assert not (registry_dirs / "datasets" / "bad.yaml").exists()
    assert not list((registry_dirs / "derived").glob("*bad*")) if (registry_dirs / "derived").exists() else True


def test_one_source_at_a_time_and_labelstudio_needs_images(registry_dirs, tmp_path, capsys):
    export = write_export(tmp_path / "e.json", [task(1, "p00.jpg", None)])
    code, _, err = run_cli(capsys, "data", "add", "x", "--labelstudio", export)
    assert code == 2 and "--labelstudio needs --images" in err
    code, _, err = run_cli(capsys, "data", "add", "x", "--labelstudio", export, "--coco", export, "--images", tmp_path)
    assert code == 2 and "not both" in err
