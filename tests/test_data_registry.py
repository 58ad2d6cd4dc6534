"""Registered data sets: `seglib data add | list | check | split`, training on one set or several, evaluation on each
set's test split, and the refusals (bad input named in one line, nothing half-registered, no set called external
for a model that trained on it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import photo_folders
from PIL import Image

from seglib.cli import main
from seglib.data import descriptions, registry
from seglib.infra.errors import DataError


@pytest.fixture
def registry_dirs(tmp_path, monkeypatch):
    """Descriptions, derived masks and splits of added sets under tmp_path; runs too."""
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "data"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_built_in_sets_are_two_descriptions_of_the_same_kind(registry_dirs):
    sets = descriptions.registered()
    assert {"human-seg", "pennfudan"} <= set(sets)
    assert sets["human-seg"].kind == "listing" and sets["pennfudan"].kind == "folders"
    assert sets["pennfudan"].mask_rule == "nonzero" and sets["pennfudan"].builtin


def test_the_external_check_set_and_how_a_set_is_fetched_are_read_from_its_description(registry_dirs, tmp_path,
                                                                                       capsys):
    from seglib.studies.crossdata import anchor_folder

    check = descriptions.external_check_set()
    assert (check.name, check.title, check.role) == ("pennfudan", "Penn-Fudan", descriptions.EXTERNAL_CHECK)
    assert check.fetch == "seglib data fetch pennfudan"
    assert (anchor_folder(descriptions.BUILTIN), anchor_folder(check.name)) == ("test", check.name)
    images, masks = photo_folders(tmp_path / "mine", n=3)
    assert run_cli(capsys, "data", "add", "mine", "--images", images, "--masks", masks)[0] == 0
    code, _, err = run_cli(capsys, "data", "fetch", "mine")
    assert code == 2 and err.strip() == "seglib: error: data set 'mine': seglib cannot fetch it; its files come from ?"
    code, _, err = run_cli(capsys, "data", "fetch", "pennfudan", "--source", tmp_path / "none", "--dest", tmp_path)
    assert code == 2 and "source not found" in err and not (tmp_path / "PennFudanPed").exists()


def test_a_folder_set_goes_through_add_check_split_train_evaluate_predict(registry_dirs, tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "mine", mask_suffix="_m")
    # add, list, check, split
    code, out, err = run_cli(capsys, "data", "add", "mine", "--images", images, "--masks", masks,
                             "--mask-suffix", "_m")
    assert code == 0, err
    assert "registered mine: 14 pairs" in out
    assert (registry_dirs / "datasets" / "mine.yaml").is_file()
    code, out, _ = run_cli(capsys, "data", "list")
    assert "mine" in out and "folders" in out
    code, out, err = run_cli(capsys, "data", "check", "mine")
    assert code == 0, err
    assert "14 image/mask pairs" in out and "mask-rescaled (4)" in out
    code, out, err = run_cli(capsys, "data", "split", "mine", "--folds", "0")
    assert code == 0, err
    split_dir = registry_dirs / "splits" / "mine"
    assert {p.name for p in split_dir.glob("*.csv")} == {"train.csv", "val.csv", "test.csv"}
    # train on it
    code, out, err = run_cli(capsys, "train", "--run", "r", "--profile", "smoke", "--set", "data=mine")
    assert code == 0, err
    saved = torch.load(tmp_path / "runs" / "r" / "best.pt", weights_only=True)
    record = saved["data_split"]
    assert record["datasets"] == ["mine"]
    train_ids = set(record["train_ids"])
    test_ids = set(pd.read_csv(split_dir / "test.csv", dtype=str)["id"])
    assert train_ids and test_ids and not train_ids & test_ids
    # evaluate on its own test split (val scored first for the threshold), then the set's test split by name
    code, out, err = run_cli(capsys, "evaluate", "--run", "r", "--split", "test", "--quiet")
    assert code == 0, err
    metrics = json.loads((tmp_path / "runs" / "r" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["datasets"] == ["mine"] and metrics["threshold_source"] == "val sweep"
    assert metrics["split_checked"] and metrics["n_images"] == len(
        (split_dir / "test.csv").read_text().strip().splitlines()) - 1
    code, out, err = run_cli(capsys, "evaluate", "--run", "r", "--dataset", "mine", "--quiet")
    assert code == 0, err
    again = json.loads((tmp_path / "runs" / "r" / "eval" / "mine-test" / "metrics.json").read_text())
    assert again["mean_iou"] == pytest.approx(metrics["mean_iou"])
    # every photo of the set is not external to a model that trained on it
    code, out, err = run_cli(capsys, "evaluate", "--run", "r", "--external", "mine", "--quiet")
    assert code == 2
    assert "trained or validated this model" in err and "--dataset mine" in err and len(err.splitlines()) == 1
    # predict with it
    code, out, err = run_cli(capsys, "predict", "--run", "r", images / "p01.jpg", "--out", tmp_path / "pred")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["p01.mask.png", "quality.csv"], out


def test_training_on_two_sets_records_qualified_ids_and_scores_each_test_split(registry_dirs, tmp_path, capsys):
    for name, seed in (("aa", 1), ("bb", 2)):
        images, masks = photo_folders(tmp_path / name, n=20, seed=seed)
        assert run_cli(capsys, "data", "add", name, "--images", images, "--masks", masks)[0] == 0
        assert run_cli(capsys, "data", "split", name, "--folds", "0")[0] == 0
    code, out, err = run_cli(capsys, "train", "--run", "both", "--profile", "smoke", "--set", "data=aa,bb",
                             "--set", "limit_train=0", "--set", "limit_val=0")
    assert code == 0, err
    record = torch.load(tmp_path / "runs" / "both" / "last.pt", weights_only=True)["data_split"]
    assert record["datasets"] == ["aa", "bb"]
    assert {i.split("/")[0] for i in record["train_ids"]} == {"aa", "bb"}
    assert all("/" in i for i in record["val_ids"])
    for name in ("aa", "bb"):
        code, out, err = run_cli(capsys, "evaluate", "--run", "both", "--dataset", name, "--quiet")
        assert code == 0, err
        assert (tmp_path / "runs" / "both" / "eval" / f"{name}-test" / "metrics.json").is_file()
    code, _, err = run_cli(capsys, "evaluate", "--run", "both", "--external", "bb", "--quiet")
    assert code == 2 and "not an external set" in err


def test_a_set_trained_on_by_one_model_is_external_to_another(registry_dirs, tmp_path, capsys):
    for name, seed in (("aa", 1), ("bb", 2)):
        images, masks = photo_folders(tmp_path / name, n=20, seed=seed)
        assert run_cli(capsys, "data", "add", name, "--images", images, "--masks", masks)[0] == 0
        assert run_cli(capsys, "data", "split", name, "--folds", "0")[0] == 0
    assert run_cli(capsys, "train", "--run", "a", "--profile", "smoke", "--set", "data=aa")[0] == 0
    code, out, err = run_cli(capsys, "evaluate", "--run", "a", "--external", "bb", "--quiet")
    assert code == 0, err
    metrics = json.loads((tmp_path / "runs" / "a" / "eval" / "bb" / "metrics.json").read_text())
    assert metrics["n_images"] == 20 and metrics["external_set"]["registered"]


def test_the_same_photos_under_another_name_are_not_external_to_a_model_that_trained_on_them(registry_dirs,
                                                                                             tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "aa", n=20, seed=3)
    assert run_cli(capsys, "data", "add", "aa", "--images", images, "--masks", masks)[0] == 0
    assert run_cli(capsys, "data", "split", "aa", "--folds", "0")[0] == 0
    assert run_cli(capsys, "data", "add", "copy", "--images", images, "--masks", masks)[0] == 0
    assert run_cli(capsys, "train", "--run", "a", "--profile", "smoke", "--set", "data=aa")[0] == 0
    record = torch.load(tmp_path / "runs" / "a" / "best.pt", weights_only=True)["data_split"]
    assert len(record["photo_sha1"]) == len(record["train_ids"]) + len(record["val_ids"])
    code, _, err = run_cli(capsys, "evaluate", "--run", "a", "--external", "copy", "--quiet")
    assert code == 2 and "trained or validated this model" in err
    code, _, err = run_cli(capsys, "evaluate", "--run", "a", "--external", f"{images}:{masks}", "--quiet")
    assert code == 2 and "not an external set" in err


def test_a_split_that_would_leave_val_or_test_empty_is_refused(registry_dirs, tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "few", n=5)
    assert run_cli(capsys, "data", "add", "few", "--images", images, "--masks", masks)[0] == 0
    code, _, err = run_cli(capsys, "data", "split", "few", "--folds", "0")
    assert code == 2 and "few.yaml" in err and "split empty" in err
    assert not (registry_dirs / "splits" / "few").exists()


def test_a_set_without_a_split_is_refused_for_training_with_the_command_that_writes_one(registry_dirs, tmp_path,
                                                                                      capsys):
    images, masks = photo_folders(tmp_path / "mine", n=6)
    assert run_cli(capsys, "data", "add", "mine", "--images", images, "--masks", masks)[0] == 0
    code, _, err = run_cli(capsys, "train", "--run", "r", "--profile", "smoke", "--set", "data=mine")
    assert code == 2 and "seglib data split mine" in err
    assert not (tmp_path / "runs" / "r").exists()
    code, _, err = run_cli(capsys, "train", "--run", "r", "--profile", "smoke", "--set", "data=nosuch")
    assert code == 2 and "'nosuch' is not registered" in err


def test_a_pairs_csv_with_instance_id_masks_registers_by_its_rule(registry_dirs, tmp_path, capsys):
    images, _ = photo_folders(tmp_path / "csv", n=5, scale_every=0)
    ids = tmp_path / "csv" / "ids"
    ids.mkdir()
    rows = ["image,mask"]
    for i in range(5):
        mask = np.zeros((72, 56), np.uint8)
        mask[10:30, 5:20], mask[40:60, 30:50] = 1, 2  # two people, ids 1 and 2
        Image.fromarray(mask).save(ids / f"p{i:02d}.png")
        rows.append(f"images/p{i:02d}.jpg,ids/p{i:02d}.png")
    (tmp_path / "csv" / "pairs.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(capsys, "data", "add", "ids", "--pairs", tmp_path / "csv" / "pairs.csv")
    assert code == 2 and "mask is not binary" in err and "p00.png" in err  # ids 1 and 2: no rule given
    code, out, err = run_cli(capsys, "data", "add", "ids", "--pairs", tmp_path / "csv" / "pairs.csv",
                             "--mask-rule", "nonzero")
    assert code == 0, err
    spec = descriptions.get("ids")
    assert spec.kind == "pairs" and spec.mask_rule == "nonzero"
    report = registry.check_registered("ids")
    assert report.ok and report.table["fg_fraction"].iloc[0] == pytest.approx((20 * 15 + 20 * 20) / (72 * 56))


def _rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, alternating, starting with a run of 0s."""
    counts, value, run = [], 0, 0
    for pixel in mask.flatten(order="F").tolist():
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    return [*counts, run]


def _coco_file(tmp_path) -> tuple:
    """A COCO file over two photos: p00 with a polygon person and an uncompressed-RLE (crowd) person, p01 with a
    compressed-RLE person and a polygon of another category; returns (path, reference masks by stem).

    The references are drawn here with numpy: a polygon with corners on whole coordinates covers the pixels
    inside it (x 5..29 for corners at x 5 and 30); the RLE counts are run lengths in column-major order."""
    from pycocotools import mask as coco_mask

    h, w = 72, 56
    reference = {"p00": np.zeros((h, w), np.uint8), "p01": np.zeros((h, w), np.uint8)}
    polygon = [5, 5, 30, 5, 30, 40, 5, 40]
    reference["p00"][5:40, 5:30] = 1
    crowd = np.zeros((h, w), np.uint8)
    crowd[50:70, 35:55] = 1
    reference["p00"] |= crowd
    counts = _rle_counts(crowd)
    person2 = np.zeros((h, w), np.uint8)
    person2[20:60, 10:40] = 1
    reference["p01"] |= person2
    compressed = coco_mask.encode(np.asfortranarray(person2))
    data = {
        "images": [{"id": 1, "file_name": "p00.jpg", "height": h, "width": w},
                   {"id": 2, "file_name": "p01.jpg", "height": h, "width": w}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [polygon], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "segmentation": {"size": [h, w], "counts": counts},
             "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 1,
             "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()}, "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 2, "segmentation": [[0, 0, 50, 0, 50, 10, 0, 10]],
             "iscrowd": 0},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path, reference


def test_a_coco_file_with_polygons_and_rle_imports_masks_matching_a_reference_raster(registry_dirs, tmp_path,
                                                                                   capsys):
    images, _ = photo_folders(tmp_path / "coco", n=2, scale_every=0)
    path, reference = _coco_file(tmp_path)
    code, out, err = run_cli(capsys, "data", "add", "cc", "--coco", path, "--images", images)
    assert code == 0, err
    derived = registry_dirs / "derived" / "cc"
    for stem, mask in reference.items():
        written = (np.asarray(Image.open(derived / f"{stem}.png")) > 127).astype(np.uint8)
        assert np.array_equal(written, mask), stem
    assert descriptions.get("cc").kind == "coco" and descriptions.get("cc").n_pairs == 2
    assert not list((registry_dirs / "derived").glob(".cc.adding*"))  # the staging folder is gone


@pytest.mark.parametrize("case", ["missing-mask", "not-a-rescale", "colour-mask", "rule-leaves-all-empty",
                                  "duplicate-stems", "name-clash", "same-files", "coco-image-missing"])
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_registered(registry_dirs, tmp_path, capsys, case):
    images, masks = photo_folders(tmp_path / "bad", n=4, scale_every=0)
    name, extra = "mine", []
    if case == "missing-mask":
        (masks / "p02.png").unlink()
        named = "p02.png"
    elif case == "not-a-rescale":
        Image.new("L", (40, 40), 255).save(masks / "p01.png")
        named = "p01.png"
    elif case == "colour-mask":
        Image.new("RGB", (56, 72), (200, 30, 30)).save(masks / "p03.png")
        named = "p03.png"
    elif case == "rule-leaves-all-empty":
        extra = ["--mask-rule", "==7"]
        named = "p00.png"
    elif case == "duplicate-stems":
        Image.open(images / "p01.jpg").save(images / "p01.png")
        named = "p01"
    elif case == "name-clash":
        name, named = "pennfudan", "pennfudan"
    elif case == "same-files":
        for i in range(4):
            Image.open(images / f"p{i:02d}.jpg").save(masks / f"p{i:02d}.jpg")
        images, named = masks, "its own mask"
        for p in masks.glob("*.png"):
            p.unlink()
        for p in images.glob("*.jpg"):
            p.rename(p.with_suffix(".png"))
    else:
        path, _ = _coco_file(tmp_path)
        (images / "p01.jpg").unlink()
        code, _, err = run_cli(capsys, "data", "add", name, "--coco", path, "--images", images)
        assert code == 2 and "p01.jpg" in err and len(err.strip().splitlines()) == 1
        assert not (registry_dirs / "datasets" / f"{name}.yaml").exists()
        assert not any((registry_dirs / "derived").glob("*")) if (registry_dirs / "derived").exists() else True
        return
    code, out, err = run_cli(capsys, "data", "add", name, "--images", images, "--masks", masks, *extra)
    assert code == 2, out
    assert err.startswith("seglib: error: ") and len(err.strip().splitlines()) == 1
    assert named in err
    assert not (registry_dirs / "datasets" / f"{name}.yaml").exists()
    if case == "colour-mask":
        assert "--mask-rule rgb:R,G,B" in err


def test_a_description_with_an_unknown_field_or_kind_is_refused_naming_the_file(registry_dirs):
    folder = registry_dirs / "datasets"
    folder.mkdir(parents=True)
    (folder / "odd.yaml").write_text("name: odd\nkind: folders\ncolour: blue\n")
    with pytest.raises(DataError, match=r"odd\.yaml: unknown field\(s\) colour"):
        descriptions.registered()
    (folder / "odd.yaml").write_text("name: odd\nkind: zip\n")
    with pytest.raises(DataError, match=r"odd\.yaml: kind 'zip'"):
        descriptions.registered()


def _cut_outs(masks) -> dict:
    """Each 0/255 mask saved over itself as a cut-out export: white everywhere, the person in the alpha channel;
    returns each mask's person fraction by stem."""
    fractions = {}
    for path in sorted(masks.glob("*.png")):
        person = np.asarray(Image.open(path)) > 127
        rgba = np.full((*person.shape, 4), 255, np.uint8)
        rgba[..., 3] = np.where(person, 255, 0)
        Image.fromarray(rgba, "RGBA").save(path)
        fractions[path.stem] = float(person.mean())
    return fractions


def test_cut_out_masks_with_the_person_in_alpha_are_read_by_the_alpha_rule_only(registry_dirs, tmp_path, capsys):
    images, masks = photo_folders(tmp_path / "cut", n=5)
    fractions = _cut_outs(masks)
    code, out, err = run_cli(capsys, "data", "add", "cut", "--images", images, "--masks", masks)
    assert code == 2, out
    assert err.startswith(f"seglib: error: {masks / 'p00.png'}: ") and len(err.strip().splitlines()) == 1
    assert "--mask-rule alpha" in err
    assert not (registry_dirs / "datasets" / "cut.yaml").exists()
    code, out, err = run_cli(capsys, "data", "add", "cut", "--images", images, "--masks", masks,
                             "--mask-rule", "alpha")
    assert code == 0, err
    report = registry.check_registered("cut")
    assert report.ok
    assert dict(zip(report.table["id"], report.table["fg_fraction"], strict=True)) == pytest.approx(fractions)


def test_mask_rules_read_grey_palette_and_one_bit_masks_as_before_and_transparency_by_the_alpha_rule(tmp_path):
    from seglib.data.mask_rules import MaskRule

    values = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(values).save(tmp_path / "grey.png")
    Image.fromarray(values).convert("1").save(tmp_path / "bits.png")
    Image.fromarray(values).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(values).convert("RGBA").save(tmp_path / "opaque.png")  # alpha 255 everywhere: read as grey
    for name in ("grey.png", "bits.png", "palette.png", "opaque.png"):
        for rule in ("binary", "nonzero", "==255"):
            assert MaskRule.parse(rule).read(tmp_path / name).tolist() == (values > 0).tolist(), (name, rule)
    rgba = np.full((2, 2, 4), 255, np.uint8)
    rgba[..., 3] = values
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    quantised = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    quantised.putpalette([255, 255, 255, 255, 255, 255])
    quantised.save(tmp_path / "cut_palette.png", transparency=bytes([0, 255]))  # white, person in the palette alpha
    alpha = MaskRule.parse("alpha")
    for name in ("cut.png", "cut_palette.png"):
        assert alpha.read(tmp_path / name).tolist() == (values > 127).tolist(), name
        for rule in ("binary", "nonzero", "rgb:255,255,255"):
            with pytest.raises(DataError) as info:
                MaskRule.parse(rule).read(tmp_path / name)
            text = str(info.value)
            assert text.startswith(f"{tmp_path / name}: ") and "--mask-rule alpha" in text and "\n" not in text
    with pytest.raises(DataError, match=r"grey\.png: .*no alpha channel"):
        alpha.read(tmp_path / "grey.png")


def test_check_reports_photos_or_masks_changed_since_registration(registry_dirs, tmp_path, capsys):
    import shlex

    images, masks = photo_folders(tmp_path / "mine", n=6)
    assert run_cli(capsys, "data", "add", "mine", "--images", images, "--masks", masks)[0] == 0
    assert run_cli(capsys, "data", "check", "mine")[0] == 0
    one, two = (masks / "p01.png").read_bytes(), (masks / "p02.png").read_bytes()
    (masks / "p01.png").write_bytes(two)
    (masks / "p02.png").write_bytes(one)
    code, out, err = run_cli(capsys, "data", "check", "mine")
    assert code == 1, out
    changed = [line for line in err.splitlines() if "changed since it was registered" in line]
    assert len(changed) == 1 and "mine.yaml" in changed[0], err
    command = changed[0].split("`")[1]
    assert command.startswith("seglib data add mine --images ")
    (registry_dirs / "datasets" / "mine.yaml").unlink()
    assert run_cli(capsys, *shlex.split(command)[1:])[0] == 0  # the command it gives registers the set again
    assert run_cli(capsys, "data", "check", "mine")[0] == 0
