"""`seglib label export | suggest`: pre-labels for CVAT (COCO) and Label Studio that come back through `seglib data
add --coco` / `--labelstudio` as the very masks the model predicted, in the ranking's order; Label Studio's brush
RLE written byte for byte as its own converter writes it; and the bad inputs, one line each, nothing half-written."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import photo_folders
from PIL import Image

from seglib.cli import main
from seglib.data import brush
from seglib.data.labelstudio import stored_orientation
from seglib.infra.errors import DataError
from seglib.infra.paths import PROJECT_ROOT
from seglib.label.formats import BRUSH_TAG, IMAGE_TAG, POLYGON_TAG

REFERENCE = PROJECT_ROOT / "reports" / "reference" / "best.pt"  # the committed model: masks with people in them

# Label Studio's own converter (label_studio_sdk.converter.brush, version 2.1.2) on these inputs
CONVERTER = {
    "mask2rle 2x3": (np.array([[0, 255, 255], [255, 0, 0]], np.uint8), [0, 0, 0, 24, 57, 27, 252, 96, 22, 255, 231, 0, 0]),
    "mask2rle 1x1": (np.full((1, 1), 255, np.uint8), [0, 0, 0, 4, 57, 27, 252, 127, 224]),
}
BLOB = np.zeros((5, 70), np.uint8)
BLOB[1:4, 3:66] = 255
CONVERTER["mask2rle 5x70"] = (BLOB, [0, 0, 5, 120, 57, 27, 255, 1, 35, 0, 223, 127, 248, 108, 3, 125, 255, 225, 176,
                                     13, 247, 255, 192, 73, 192, 0])
RUNS = [5] + [7] * 2 + [9] * 9 + [1] * 17 + [2] * 257 + [3] * 65537 + [4]  # every block size, and one past the largest
RUNS_RLE = [0, 1, 1, 32, 57, 27, 248, 0, 176, 131, 216, 9, 194, 0, 60, 4, 0, 11, 255, 255, 129, 240, 0, 0, 48, 1, 0]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", sorted(CONVERTER))
def test_brush_rle_is_written_byte_for_byte_as_label_studios_converter_writes_it(case):
    mask, expected = CONVERTER[case]
    assert brush.encode_mask(mask) == expected
    assert np.array_equal(brush.decode_mask(expected, *mask.shape), (mask > 0).astype(np.uint8))


def test_brush_rle_blocks_of_every_size_and_runs_past_the_largest_field():
    assert brush.encode_values(np.array(RUNS)) == RUNS_RLE
    assert brush.decode_values(RUNS_RLE).tolist() == RUNS
    noise = (np.random.default_rng(0).random((37, 53)) > 0.5).astype(np.uint8)  # many short runs
    assert np.array_equal(brush.decode_mask(brush.encode_mask(noise), 37, 53), noise)


def test_a_brush_region_that_is_not_rle_of_its_image_is_one_line():
    rle = brush.encode_mask((np.random.default_rng(1).random((4, 6)) > 0.5).astype(np.uint8))
    for bad, expected in ((rle[:5], "not a list of bytes 0-255"), (rle[:-4], "ends in the middle"),
                          ([*rle[:3], 300, *rle[4:]], "bytes 0-255"), ("abc", "not a list of bytes")):
        with pytest.raises(DataError, match=expected):
            brush.decode_mask(bad, 4, 6, "t.json: task 1")
    with pytest.raises(DataError, match="holds 96 values, not the 80 of a 5x4 RGBA image"):
        brush.decode_mask(rle, 4, 5)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Three photos, one stored sideways with an EXIF tag, and the masks the reference predicts for each, over
    the photo's stored pixels (what COCO and every seglib set use)."""
    from seglib.predict.inputs import load_input
    from seglib.predict.predictor import Predictor

    images, _ = photo_folders(tmp_path_factory.mktemp("label") / "shots", n=3, scale_every=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(images / "p02.jpg").save(images / "p02.jpg", exif=exif, quality=95)
    predictor = Predictor.from_checkpoint(REFERENCE, device="cpu")
    expected = {}
    for path in sorted(images.iterdir()):
        rgb, orientation = load_input(path)
        expected[path.stem] = stored_orientation(predictor.predict_mask(rgb), orientation)
    assert all(mask.any() for mask in expected.values())  # the round trips below carry people
    return images, expected


@pytest.fixture
def registry_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    return tmp_path / "data"


def added(registry_dirs, name: str, stem: str) -> np.ndarray:
    return (np.asarray(Image.open(registry_dirs / "derived" / name / f"{stem}.png")) > 127).astype(np.uint8)


def test_a_coco_export_comes_back_through_data_add_coco_as_the_predicted_masks(photos, registry_dirs, tmp_path,
                                                                            capsys):
    images, expected = photos
    code, out, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "coco",
                             "--out", tmp_path / "out", "--no-progress")
    assert code == 0, err
    assert "exported 3 photos as coco pre-labels" in out and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "coco.json"]
    document = json.loads((tmp_path / "out" / "coco.json").read_text())
    assert [c["name"] for c in document["categories"]] == ["person"]
    assert {a["segmentation"]["counts"].__class__ for a in document["annotations"]} == {str}  # compressed RLE
    assert next(i for i in document["images"] if i["file_name"] == "p02.jpg")["height"] == 72  # as stored
    code, _, err = run_cli(capsys, "data", "add", "mine", "--coco", tmp_path / "out" / "coco.json", "--images", images)
    assert code == 0, err
    for stem, mask in expected.items():
        assert np.array_equal(added(registry_dirs, "mine", stem), mask), stem


def test_coco_polygons_outline_the_predicted_masks(photos, registry_dirs, tmp_path, capsys):
    images, expected = photos
    code, _, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "coco",
                           "--encoding", "polygons", "--out", tmp_path / "out")
    assert code == 0, err
    assert all(isinstance(a["segmentation"], list) for a in json.loads((tmp_path / "out" / "coco.json").read_text())[
        "annotations"])
    assert run_cli(capsys, "data", "add", "poly", "--coco", tmp_path / "out" / "coco.json", "--images", images)[0] == 0
    for stem, mask in expected.items():
        back = added(registry_dirs, "poly", stem)
        assert (back & mask).sum() / (back | mask).sum() > 0.8, stem  # an outline, not the exact pixels


def annotated(tasks: list[dict]) -> list[dict]:
    """The tasks as Label Studio exports them once a person accepts each pre-label as it is."""
    return [{"id": i, "data": t["data"], "predictions": [i],
             "annotations": [{"id": i, "result": t["predictions"][0]["result"], "was_cancelled": False}]}
            for i, t in enumerate(tasks, 1)]


def test_label_studio_tasks_come_back_through_data_add_labelstudio_as_the_predicted_masks(photos, registry_dirs,
                                                                                        tmp_path, capsys):
    images, expected = photos
    code, out, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "labelstudio",
                             "--out", tmp_path / "out")
    assert code == 0, err
    config = ET.fromstring((tmp_path / "out" / "labeling_config.xml").read_text())
    names = {tag.get("name"): tag.tag for tag in config.iter()}
    assert names[IMAGE_TAG] == "Image" and names[BRUSH_TAG] == "BrushLabels" and names[POLYGON_TAG] == "PolygonLabels"
    tasks = json.loads((tmp_path / "out" / "tasks.json").read_text())
    region = tasks[0]["predictions"][0]["result"][0]
    assert (region["from_name"], region["to_name"], region["type"]) == (BRUSH_TAG, IMAGE_TAG, "brushlabels")
    assert {t["data"]["image"] for t in tasks} == {f"/data/local-files/?d=images/p0{i}.jpg" for i in range(3)}
    sideways = next(t for t in tasks if t["data"]["seglib_photo"] == "p02.jpg")["predictions"][0]["result"][0]
    assert (sideways["original_width"], sideways["original_height"]) == (72, 56)  # as a browser shows the photo
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores)  # Label Studio's uncertainty sampling serves them in the ranking's order
    export = tmp_path / "project.json"
    export.write_text(json.dumps(annotated(tasks)))
    code, _, err = run_cli(capsys, "data", "add", "studio", "--labelstudio", export, "--images", images)
    assert code == 0, err
    for stem, mask in expected.items():
        assert np.array_equal(added(registry_dirs, "studio", stem), mask), stem


def test_the_photos_come_in_the_rankings_order(photos, tmp_path, capsys, monkeypatch):
    import seglib.label.suggest as suggest

    images, _ = photos
    order = ["p01.jpg", "p02.jpg", "p00.jpg"]

    def ranking(predictor, paths, **_):
        table = pd.DataFrame({"rank": [1, 2, 3], "photo": [str(images / n) for n in order], "gain": [0.6, 0.5, 0.1]})
        table.attrs["skipped"] = []
        return table

    monkeypatch.setattr(suggest, "rank_photos", ranking)
    assert run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "coco", "--out",
                   tmp_path / "coco")[0] == 0
    assert [i["file_name"] for i in json.loads((tmp_path / "coco" / "coco.json").read_text())["images"]] == order
    assert run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "labelstudio", "--image-url",
                   "http://127.0.0.1:8000/", "--out", tmp_path / "ls")[0] == 0
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [f"http://127.0.0.1:8000/{n}" for n in order]
    assert [t["predictions"][0]["score"] for t in tasks] == pytest.approx([0.4, 0.5, 0.9])


def test_an_unreadable_photo_is_skipped_and_reported_and_the_rest_exported(photos, tmp_path, capsys):
    images, _ = photos
    folder = tmp_path / "with-a-bad-one"
    folder.mkdir()
    for path in images.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a photo at all")
    code, out, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, folder, "--to", "coco", "--out",
                             tmp_path / "out")
    assert code == 1
    assert "exported 3 photos" in out and "1 failed" in out and "broken.jpg" in err
    assert len(json.loads((tmp_path / "out" / "coco.json").read_text())["images"]) == 3


def test_an_export_folder_that_holds_files_is_refused_unless_overwrite(photos, tmp_path, capsys):
    images, _ = photos
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, stdout, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "labelstudio",
                                "--out", out)
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "already holds notes.txt; refusing to write there (pass --overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, images, "--to", "labelstudio", "--out", out,
                   "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["labeling_config.xml", "notes.txt", "tasks.json"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--to", "cvat"], "--to 'cvat': expected one of coco, labelstudio"),
    (["--to", "coco", "--encoding", "mesh"], "--encoding 'mesh': expected one of rle, polygons"),
    (["--to", "coco", "--out", "{folder}"], "is the photo folder being exported"),
    (["--to", "coco", "--folder", "{missing}"], "folder not found"),
    (["--to", "coco", "--folder", "{unreadable}"], "none of its 1 photos could be read"),
])
def test_bad_export_arguments_are_one_line_and_write_nothing(photos, tmp_path, capsys, argv, expected):
    images, _ = photos
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"\0")
    places = {"{folder}": str(images), "{missing}": str(tmp_path / "none"), "{unreadable}": str(bad)}
    argv = [places.get(a, a) for a in argv]
    folder = argv.pop(argv.index("--folder") + 1) if "--folder" in argv else str(images)
    argv = [a for a in argv if a != "--folder"]
    out = ["--out", str(tmp_path / "out")] if "--out" not in argv else []
    code, stdout, err = run_cli(capsys, "label", "export", "--checkpoint", REFERENCE, folder, *argv, *out)
    errors = [line for line in err.splitlines() if line.startswith("seglib: error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in images.iterdir()) == ["p00.jpg", "p01.jpg", "p02.jpg"]


def test_suggest_prints_the_ranking_and_writes_it_once(photos, tmp_path, capsys):
    images, _ = photos
    code, out, err = run_cli(capsys, "label", "suggest", "--checkpoint", REFERENCE, images, "--top", "2", "--out",
                             tmp_path / "next.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "next.csv")
    assert list(table["rank"]) == [1, 2] and all(Path(p).name in out for p in table["photo"])
    code, _, err = run_cli(capsys, "label", "suggest", "--checkpoint", REFERENCE, images, "--out",
                           tmp_path / "next.csv")
    assert code == 2 and "already exists; refusing to overwrite" in err
