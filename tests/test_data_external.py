"""seglib.data.external: external labelled pairs (Penn-Fudan, CSV, folders) for measuring generalisation."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib.data import external
from seglib.data.external import (
    PairSet,
    external_set,
    fetch_pennfudan,
    pairs_from_csv,
    pairs_from_folders,
    pennfudan,
)
from seglib.infra.errors import DataError, SeglibError


def make_pennfudan(root: Path, n: int = 3) -> Path:
    """A Penn-Fudan-like folder: PNGImages/<stem>.png, PedMasks/<stem>_mask.png holding instance ids 0, 1, 2."""
    folder = root / "PennFudanPed"
    (folder / "PNGImages").mkdir(parents=True)
    (folder / "PedMasks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(folder / "PNGImages" / f"P{i}.png")
        mask = np.zeros((30, 40), np.uint8)
        mask[5:15, 5:15] = 1
        mask[18:28, 20:35] = 2  # a second pedestrian
        Image.fromarray(mask).save(folder / "PedMasks" / f"P{i}_mask.png")
    (folder / "readme.txt").write_text("test copy")
    return folder


def test_pennfudan_instance_masks_become_one_person_mask(tmp_path):
    pairs = pennfudan(make_pennfudan(tmp_path))
    assert pairs.name == "pennfudan" and list(pairs.items["id"]) == ["P1", "P2", "P3"]
    image, mask = pairs.load(Path(pairs.items["image_path"][0]), Path(pairs.items["mask_path"][0]))
    assert image.shape == (30, 40, 3) and set(np.unique(mask)) == {0, 1}
    assert int(mask.sum()) == 10 * 10 + 10 * 15  # both pedestrians are "person"


def test_missing_pennfudan_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_PENNFUDAN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="seglib data fetch pennfudan"):
        external_set("pennfudan")


def test_folders_and_csv_pairs(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "msk"
    images.mkdir()
    masks.mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (20, 10)).save(images / f"{stem}.jpg")
        Image.new("L", (20, 10), 255).save(masks / f"{stem}.png")
    pairs = external_set(f"{images}:{masks}")
    assert list(pairs.items["id"]) == ["a", "b"] and pairs.mask_rule == "binary"
    (tmp_path / "pairs.csv").write_text("image,mask\nimg/a.jpg,msk/a.png\nimg/b.jpg,msk/b.png\n")
    assert list(pairs_from_csv(tmp_path / "pairs.csv").items["id"]) == ["a", "b"]
    (masks / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png: mask not found for b\.jpg"):
        pairs_from_folders(images, masks)
    with pytest.raises(DataError, match=r"msk/b\.png: listed in pairs\.csv but not found"):
        pairs_from_csv(tmp_path / "pairs.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="needs the columns image and mask"):
        pairs_from_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="give pennfudan"):
        external_set("nonsense")


def test_fetch_from_a_folder_then_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(external, "PENNFUDAN_N", 3)
    src = make_pennfudan(tmp_path / "src")
    dest, message = fetch_pennfudan(src, tmp_path / "ext", progress=False)
    assert dest == tmp_path / "ext" / "PennFudanPed" and "copied from" in message
    assert sorted(p.name for p in (tmp_path / "ext").iterdir()) == ["PennFudanPed"]
    assert "nothing to do" in fetch_pennfudan(src, tmp_path / "ext", progress=False)[1]


def test_incomplete_copy_is_refused_and_leaves_nothing(tmp_path):
    src = make_pennfudan(tmp_path / "src")  # 3 pairs, not 170
    with pytest.raises(DataError, match="3 image/mask pairs, expected 170"):
        fetch_pennfudan(src, tmp_path / "ext", progress=False)
    assert not (tmp_path / "ext").exists()


def test_fetch_downloads_the_archive_over_http(tmp_path, monkeypatch, server):
    """The real download code, against a server on 127.0.0.1 serving a zip laid out like the authors'."""
    monkeypatch.setattr(external, "PENNFUDAN_N", 3)
    src = make_pennfudan(tmp_path / "src")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src.parent).as_posix())
    httpd, base = server
    httpd.routes["/PennFudanPed.zip"] = (buf.getvalue(), True)
    url = f"{base}/PennFudanPed.zip"
    dest, message = fetch_pennfudan(url, tmp_path / "ext", progress=False)
    assert message.startswith(f"PennFudanPed: downloaded from {url}") and len(pennfudan(dest).items) == 3


def test_external_set_is_scored_like_test_with_vals_threshold(synthetic_splits, tmp_path):
    from seglib.evaluate import EvalOptions, evaluate_run

    pairs = pennfudan(make_pennfudan(tmp_path))

    class Truth:
        """Predicts each photo's own mask (looked up by size and content)."""

        threshold, tta, source = 0.5, False, "truth"

        def facts(self):
            return {"epoch": 0, "threshold": 0.5, "weights": "ground truth", "profile": "test"}

        def predict_proba_batch(self, images):
            return [pairs.load(Path(i), Path(m))[1].astype(np.float32)
                    for i, m in zip(pairs.items["image_path"][:len(images)], pairs.items["mask_path"][:len(images)],
                                    strict=True)]

    # the data set's train split gives the prior baseline
    result = evaluate_run(split=pairs, predictor=Truth(), out_dir=tmp_path / "ev", dataset_dir=synthetic_splits[0],
                          splits_dir=synthetic_splits[1],
                          options=EvalOptions(threshold_source="checkpoint", progress=False, n_boot=20, batch_size=8))
    assert result.split == "pennfudan" and result.metrics["mean_iou"] == 1.0
    assert result.metrics["external_set"]["mask_rule"] == "nonzero" and result.metrics["n_images"] == 3
    assert (tmp_path / "ev" / "pennfudan" / "per_image.csv").is_file()
    with pytest.raises(SeglibError, match="pennfudan is already scored"):
        evaluate_run(split=pairs, predictor=Truth(), out_dir=tmp_path / "ev", dataset_dir=synthetic_splits[0],
                     splits_dir=synthetic_splits[1],
                     options=EvalOptions(threshold_source="checkpoint", progress=False, n_boot=20))
    clash = PairSet("test", pairs.items, "nonzero")
    with pytest.raises(SeglibError, match="clashes with a split"):
        evaluate_run(split=clash, predictor=Truth(), out_dir=tmp_path / "ev2", options=EvalOptions(progress=False))
    assert isinstance(pd.read_csv(tmp_path / "ev" / "pennfudan" / "per_image.csv"), pd.DataFrame)


# ------------------------------------------------------------------------------------------- identified by content


def _user_set(folder: Path, box: tuple[int, int], csv_name: str = "ok.csv") -> Path:
    """A pairs CSV in `folder` with two photos whose masks hold a box of the given height and width."""
    (folder / "img").mkdir(parents=True)
    (folder / "msk").mkdir()
    rng = np.random.default_rng(1)
    for stem in ("a", "b"):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(folder / "img" / f"{stem}.png")
        mask = np.zeros((24, 32), np.uint8)
        mask[:box[0], :box[1]] = 255
        Image.fromarray(mask).save(folder / "msk" / f"{stem}.png")
    (folder / csv_name).write_text("image,mask\nimg/a.png,msk/a.png\nimg/b.png,msk/b.png\n")
    return folder / csv_name


def test_two_csvs_of_the_same_name_are_two_sets(tmp_path):
    first = external_set(str(_user_set(tmp_path / "a", (12, 16))))
    second = external_set(str(_user_set(tmp_path / "b", (20, 8))))
    assert first.name.startswith("ok-") and second.name.startswith("ok-") and first.name != second.name
    assert first.content_sha1 != second.content_sha1 and first.ids_sha1 == second.ids_sha1  # same ids, not content
    copy = tmp_path / "c"
    copy.mkdir()
    for sub in ("img", "msk"):
        (copy / sub).mkdir()
        for f in (tmp_path / "a" / sub).iterdir():
            (copy / sub / f.name).write_bytes(f.read_bytes())
    (copy / "ok.csv").write_text((tmp_path / "a" / "ok.csv").read_text())
    assert external_set(str(copy / "ok.csv")).name == first.name  # the same content is the same set


def test_a_user_file_named_pennfudan_is_not_the_penn_fudan_database(tmp_path):
    mine = external_set(str(_user_set(tmp_path / "mine", (12, 16), csv_name="pennfudan.csv")))
    assert mine.name != "pennfudan" and mine.name.startswith("pennfudan-") and not mine.registered
    assert mine.source == str(tmp_path / "mine" / "pennfudan.csv") and "Penn-Fudan" not in mine.source
    registered = pennfudan(make_pennfudan(tmp_path / "pf"))
    assert registered.name == "pennfudan" and registered.registered and "Penn-Fudan" in registered.source


def test_scores_of_one_external_set_are_never_shown_for_another(synthetic_splits, tmp_path, caplog):
    from conftest import save_tiny_checkpoint

    from seglib.evaluate import load_or_evaluate

    folder, splits = synthetic_splits
    run_dir = tmp_path / "runs" / "r1"
    save_tiny_checkpoint(run_dir / "best.pt")
    caplog.set_level(logging.INFO, logger="seglib")
    kw = {"dataset_dir": folder, "splits_dir": splits, "n_boot": 10}
    first = external_set(str(_user_set(tmp_path / "a", (12, 16))))
    second = external_set(str(_user_set(tmp_path / "b", (24, 32))))  # all person: another all-foreground score
    a = load_or_evaluate(run_dir, first, **kw)
    b = load_or_evaluate(run_dir, second, **kw)
    assert "not scored yet" in caplog.messages[-1] and a.out_dir != b.out_dir
    assert a.metrics["baselines"]["all-foreground"]["mean_iou"] == pytest.approx(0.25)
    assert b.metrics["baselines"]["all-foreground"]["mean_iou"] == pytest.approx(1.0)
    assert b.metrics["external_set"]["content_sha1"] == second.content_sha1
    assert load_or_evaluate(run_dir, first, **kw).metrics == a.metrics  # its own scores reused
    clash = PairSet(first.name, second.items, "binary")  # the same name on other photos
    with pytest.raises(SeglibError, match=f"holds scores of other photos under the name '{first.name}'"):
        load_or_evaluate(run_dir, clash, **kw)


# ------------------------------------------------------------------------------------------- what a scan leaves out


def _noise_photo(path: Path, seed: int = 0) -> None:
    Image.fromarray((np.random.default_rng(seed).random((24, 32, 3)) * 255).astype(np.uint8)).save(path)


def _box_mask(path: Path) -> None:
    mask = np.zeros((24, 32), np.uint8)
    mask[4:20, 8:24] = 255
    Image.fromarray(mask).save(path)


def _mixed_folders(root: Path) -> tuple[Path, Path]:
    """images/ with one photo of each kind seglib decodes, a text file, a hidden photo, a folder, a symlink loop and
    a broken link; masks/ with a PNG or a TIFF per photo, a mask without a photo and a text file."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i, suffix in enumerate((".jpg", ".PNG", ".webp", ".tif", ".bmp", ".gif", ".HEIC", ".avif")):
        _noise_photo(images / f"p{i}{suffix}", i)
        _box_mask(masks / f"p{i}{'.tif' if suffix == '.tif' else '.png'}")
    _noise_photo(images / ".hidden.jpg")
    (images / "a.txt").write_text("notes")
    (images / "sub").mkdir()
    (images / "loop.jpg").symlink_to(images / "loop.jpg")
    (images / "gone.jpg").symlink_to(root / "deleted.jpg")
    _box_mask(masks / "orphan.png")
    (masks / "readme.txt").write_text("masks")
    return images, masks


def test_a_folder_scan_takes_every_photo_kind_and_names_each_file_it_leaves_out(tmp_path):
    images, masks = _mixed_folders(tmp_path)
    pairs = pairs_from_folders(images, masks)
    assert list(pairs.items["id"]) == ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"]
    assert Path(pairs.items["mask_path"][3]).name == "p3.tif"  # a lossless mask of another kind
    reasons = {Path(path).name: why for path, why in pairs.left_out}
    assert set(reasons) == {"a.txt", "sub", "loop.jpg", "gone.jpg", "orphan.png", "readme.txt"}  # not .hidden.jpg
    assert reasons["a.txt"] == "not an image" and reasons["orphan.png"] == "a mask without a photo"
    assert reasons["loop.jpg"] == "symbolic link loop" and reasons["gone.jpg"].startswith("broken link")
    assert reasons["sub"].startswith("a folder")
    summary = external.left_out_summary(pairs.left_out, shown=3)
    assert summary.startswith("left out 6 files: ") and summary.endswith(", and 3 more")
    with pytest.raises(DataError, match=r"p0\.jpg: is a file, not a folder"):
        pairs_from_folders(images / "p0.jpg", masks)
    _box_mask(masks / "p0.tif")  # two masks for one photo: which one is meant is not guessed
    with pytest.raises(DataError, match=r"p0\.jpg: two masks \(p0\.png, p0\.tif\)"):
        pairs_from_folders(images, masks)


def test_data_add_says_how_many_files_it_left_out_and_names_them(tmp_path, monkeypatch, capsys):
    from seglib.cli import main

    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    images, masks = _mixed_folders(tmp_path / "ext")
    assert main(["data", "add", "extset", "--images", str(images), "--masks", str(masks)]) == 0
    out = capsys.readouterr().out
    assert "registered extset: 8 pairs; left out 6 files: " in out
    for named in ("a.txt (not an image)", "gone.jpg (broken link", "loop.jpg (symbolic link loop)"):
        assert named in out
    assert "and 3 more" in out and len(out.strip().splitlines()) == 1


def test_a_repeated_row_of_a_pairs_csv_is_named_by_its_id_or_photo_and_lines(tmp_path):
    csv = _user_set(tmp_path / "s", (12, 16))
    csv.write_text("id,image,mask\nx,img/a.png,msk/a.png\ny,img/b.png,msk/b.png\nx,img/a.png,msk/a.png\n")
    with pytest.raises(DataError, match=r"ok\.csv: img/a\.png is listed on lines 2 and 4") as info:
        pairs_from_csv(csv)
    assert "add an id column" not in str(info.value)
    csv.write_text("id,image,mask\nx,img/a.png,msk/a.png\nx,img/b.png,msk/b.png\n")
    with pytest.raises(DataError, match=r"ok\.csv: id x is given on lines 2 and 3") as info:
        pairs_from_csv(csv)
    assert "add an id column" not in str(info.value)
    (tmp_path / "s" / "img2").mkdir()
    (tmp_path / "s" / "img2" / "a.png").write_bytes((tmp_path / "s" / "img" / "b.png").read_bytes())
    csv.write_text("image,mask\nimg/a.png,msk/a.png\n\nimg2/a.png,msk/b.png\n")  # a blank line counts as a line
    with pytest.raises(DataError, match=r"img/a\.png and img2/a\.png \(lines 2 and 4\) share the file stem a; add "
                                        r"an id column"):
        pairs_from_csv(csv)


def test_a_pairs_csv_row_with_a_photo_and_no_mask_is_named_not_dropped(tmp_path):
    csv = _user_set(tmp_path / "s", (12, 16))
    csv.write_text("image,mask\nimg/a.png,msk/a.png\nimg/b.png,\n")
    with pytest.raises(DataError, match=r"ok\.csv: line 3 names the photo img/b\.png but no mask"):
        pairs_from_csv(csv)


def test_data_check_names_a_listed_link_loop_and_unlisted_links_that_lead_nowhere(tmp_path, capsys):
    """The built-in layout's scan (`seglib data check`): a listed photo that is a symbolic link loop is one problem
    line, not a traceback; links in its folders that lead to no file are named among the unlisted files."""
    from conftest import make_dataset

    from seglib.cli import main

    folder = make_dataset(tmp_path / "raw", n=4)
    (folder / "Training_Images" / "2.jpg").unlink()
    (folder / "Training_Images" / "2.jpg").symlink_to(folder / "Training_Images" / "2.jpg")
    assert main(["data", "check", "--data-dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "2.jpg: symbolic link loop" in err
    (folder / "Training_Images" / "2.jpg").unlink()
    make_dataset(tmp_path / "copy", n=4)
    (folder / "Training_Images" / "2.jpg").write_bytes((tmp_path / "copy" / folder.name / "Training_Images" /
                                                         "2.jpg").read_bytes())
    (folder / "Training_Images" / "9.jpg").symlink_to(folder / "Training_Images" / "9.jpg")
    (folder / "Ground_Truth" / "8.png").symlink_to(tmp_path / "deleted.png")
    assert main(["data", "check", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "quirk unlisted-files (2)" in out and "8.png (broken link to" in out and "9.jpg (symbolic link loop)" in out


def test_a_pairs_csv_listing_a_link_loop_or_a_broken_link_names_it_for_what_it_is(tmp_path):
    csv = _user_set(tmp_path / "s", (12, 16))
    (tmp_path / "s" / "img" / "b.png").unlink()
    (tmp_path / "s" / "img" / "b.png").symlink_to(tmp_path / "s" / "img" / "b.png")
    with pytest.raises(DataError, match=r"img/b\.png: listed in ok\.csv but is a symbolic link loop$"):
        pairs_from_csv(csv)
    (tmp_path / "s" / "img" / "b.png").unlink()
    (tmp_path / "s" / "img" / "b.png").symlink_to(tmp_path / "deleted.png")
    with pytest.raises(DataError, match=r"img/b\.png: listed in ok\.csv but is a broken link to .*deleted\.png$"):
        pairs_from_csv(csv)
