"""VITON as a built-in set: its description's two parts, the parser-map rule, its fetch and its committed split.

Every test but the last two runs on a tiny VITON-like folder made here ($SEGLIB_VITON_DIR); those two read the
shared copy beside the project and are skipped where there is none."""

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seglib.cli import main
from seglib.data import viton
from seglib.data.descriptions import get
from seglib.data.external import pairs_from_folders
from seglib.data.mask_rules import NECK_GAP_MAX, PARSING, MaskRule, fill_neck_gap
from seglib.infra import paths
from seglib.infra.errors import DataError

H, W = 64, 48
SHARED = paths.PROJECT_ROOT.parent / "shared" / "datasets" / "VITON"
LIP_PALETTE = [0, 0, 0, 128, 0, 0, 254, 0, 0, 0, 85, 0, 169, 0, 51, 254, 85, 0, 0, 0, 85, 0, 119, 220, 85, 85, 0,
               0, 85, 85, 85, 51, 0, 52, 86, 128, 0, 128, 0, 0, 0, 254, 51, 169, 220, 0, 254, 254]


def parser_map(neck: int, gap: int = 6) -> np.ndarray:
    """A person as a parser labels one: hair 2, face 13 (the jaw rising at its sides), a neck band of `gap` rows
    labelled `neck` below the chin, clothes 5; background beside the neck, between jaw and shoulders."""
    classes = np.zeros((H, W), np.uint8)
    classes[4:10, 16:32] = 2
    classes[10:17, 18:30] = 13
    classes[17:22, 21:27] = 13
    classes[22:22 + gap, 21:27] = neck
    classes[22 + gap:, 8:40] = 5
    return classes


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_viton(root: Path, n_test: int = 3, n_train: int = 17, seed: int = 0) -> Path:
    """root/VITON as the shared copy lays it out: test/ with revised maps (neck 20, grey PNG), train/ with the
    original ones (neck 0, palette PNG); the last training photo is a byte copy of the first test photo."""
    rng = np.random.default_rng(seed)
    folder = root / "VITON"
    for part, maps, ids in (("test", "image-parse-new", range(1, n_test + 1)),
                            ("train", "image-parse", range(100, 100 + n_train))):
        (folder / part / "image").mkdir(parents=True)
        (folder / part / maps).mkdir(parents=True)
        for i in ids:
            stem = f"{i:06d}_0"
            Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(folder / part / "image" / f"{stem}.jpg")
            classes = parser_map(20 if part == "test" else 0, gap=4 + i % 5)
            if part == "test":
                Image.fromarray(classes).save(folder / part / maps / f"{stem}.png")
            else:
                image = Image.fromarray(classes, mode="P")
                image.putpalette(LIP_PALETTE)
                image.save(folder / part / maps / f"{stem}.png")
    shutil.copyfile(folder / "test" / "image" / "000001_0.jpg", folder / "train" / "image" / f"{99 + n_train:06d}_0.jpg")
    return folder


@pytest.fixture
def small_viton(tmp_path, monkeypatch) -> Path:
    """A tiny copy named by $SEGLIB_VITON_DIR, its counts expected by the fetch check, and no committed split
    photo required of it."""
    folder = make_viton(tmp_path / "src")
    monkeypatch.setenv(viton.ENV_VITON_DIR, str(folder))
    monkeypatch.setattr(viton, "VITON_TEST_N", 3)
    monkeypatch.setattr(viton, "VITON_TRAIN_N", 17)
    monkeypatch.setattr(viton, "split_ids", set)
    monkeypatch.setenv("no_proxy", "*")
    return folder


def test_the_parsing_rule_fills_the_neck_gap_and_leaves_a_labelled_neck_alone():
    original, revised = parser_map(neck=0), parser_map(neck=20)
    filled = fill_neck_gap(original)
    assert filled[22:28, 21:27].all() and (filled == (revised > 0)).all()  # the gap becomes the neck, only it
    assert (fill_neck_gap(revised) == (revised > 0)).all()  # a labelled neck: the rule is value > 0
    long_gap = parser_map(neck=0, gap=int(NECK_GAP_MAX * H) + 2)
    assert not fill_neck_gap(long_gap)[22:30, 21:27].any()  # farther than NECK_GAP_MAX: background stays
    no_face = np.where(original == 13, 0, original)
    assert (fill_neck_gap(no_face) == (no_face > 0)).all()


def test_a_palette_map_is_read_by_its_class_indices_not_its_colours(tmp_path):
    image = Image.fromarray(parser_map(neck=0), mode="P")
    image.putpalette(LIP_PALETTE)  # the face's colour (0, 0, 254) is no class value
    image.save(tmp_path / "map.png")
    rule = MaskRule.parse(PARSING)
    assert rule.text == PARSING and (rule.read(tmp_path / "map.png") == (parser_map(neck=20) > 0)).all()


def test_the_description_reads_both_parts_and_fixes_the_test_part(small_viton):
    spec = get(viton.VITON)
    assert spec.builtin and spec.title == "VITON" and "research use only" in spec.licence
    assert spec.fetch == "seglib data fetch viton" and spec.mask_rule == PARSING
    items = spec.pair_set().items
    assert len(items) == 20 and items["mask_path"].map(lambda p: Path(p).parent.name).value_counts().to_dict() == \
        {"image-parse": 17, "image-parse-new": 3}
    assert spec.fixed_splits() == {"000001_0": "test", "000002_0": "test", "000003_0": "test"}
    relative = [f.relative_to(small_viton).as_posix() for f in spec.folders()]
    assert relative == [*viton.TEST_PART, *viton.TRAIN_PART]  # the description and the fetch name the same folders


def test_split_keeps_the_test_part_whole_and_leaves_copies_of_its_photos_out(small_viton, tmp_path, capsys):
    code, out, err = run_cli(capsys, "data", "check", "viton")
    assert code == 0, err
    assert "20 image/mask pairs" in out and "duplicate-photos (2)" in out and "in no split" in out
    code, out, err = run_cli(capsys, "data", "split", "viton", "--out", tmp_path / "splits")
    assert code == 0, err
    tables = {name: pd.read_csv(tmp_path / "splits" / f"{name}.csv", dtype={"id": str})
              for name in ("train", "val", "test", "folds")}
    assert sorted(tables["test"]["id"]) == ["000001_0", "000002_0", "000003_0"]
    assert tables["test"]["mask"].str.startswith("test/image-parse-new/").all()
    copy = "000116_0"  # the byte copy of a test photo: in no split
    dev = set(tables["train"]["id"]) | set(tables["val"]["id"])
    assert copy not in dev and dev == {f"{i:06d}_0" for i in range(100, 116)}
    assert len(tables["val"]) == 4 and set(tables["folds"]["id"]) == dev
    code, out, _ = run_cli(capsys, "data", "split", "viton", "--out", tmp_path / "splits")
    assert code == 0 and "already this split" in out


def _zip_of(folder: Path, prefix: str) -> bytes:
    """The archive GitHub serves for CP-VTON+: its data/ folder under `prefix`, with folders seglib leaves."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/data/{path.relative_to(folder).as_posix()}")
        zf.writestr(f"{prefix}/data/test/cloth/000001_1.jpg", b"not taken")
        zf.writestr(f"{prefix}/README.md", b"CP-VTON+")
    return buf.getvalue()


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_fetch_from_a_folder_a_zip_and_a_url_gives_the_same_checked_copy(small_viton, tmp_path, server):
    expected = _tree(small_viton)
    for n, source in enumerate([small_viton, small_viton.parent]):  # the copy itself, or the folder holding it
        dest, message = viton.fetch_viton(source, tmp_path / f"dir{n}", progress=False)
        assert _tree(dest) == expected and "20 image/mask pairs checked" in message
    archive = tmp_path / "master.zip"
    archive.write_bytes(_zip_of(small_viton, "cp-vton-plus-master"))
    dest, message = viton.fetch_viton(archive, tmp_path / "zip", progress=False)
    assert _tree(dest) == expected and message.startswith("VITON: extracted from")  # cloth/ and the rest left
    httpd, base = server
    httpd.routes["/master.zip"] = (archive.read_bytes(), True)
    dest, message = viton.fetch_viton(f"{base}/master.zip", tmp_path / "url", progress=False)
    assert _tree(dest) == expected and "downloaded from http://127.0.0.1:" in message
    assert "nothing to do" in viton.fetch_viton(small_viton, tmp_path / "url", progress=False)[1]


def test_fetch_reads_its_source_from_the_environment_through_the_command(small_viton, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setenv(viton.ENV_VITON_SOURCE, str(small_viton))
    code, out, err = run_cli(capsys, "data", "fetch", "viton", "--dest", tmp_path / "ext")
    assert code == 0, err
    assert out.startswith("VITON: copied from") and (tmp_path / "ext" / "VITON" / "train" / "image-parse").is_dir()


def test_an_incomplete_copy_is_refused_and_leaves_nothing(small_viton, tmp_path, monkeypatch):
    (small_viton / "test" / "image" / "000002_0.jpg").unlink()
    with pytest.raises(DataError, match=r"test/image: 2 image/label pairs, expected 3"):
        viton.fetch_viton(small_viton, tmp_path / "ext", progress=False)
    assert not (tmp_path / "ext").exists()
    shutil.rmtree(small_viton / "train" / "image-parse")
    with pytest.raises(DataError, match=r"train/image-parse: folder not found; not a complete VITON copy"):
        viton.fetch_viton(small_viton, tmp_path / "ext", progress=False)
    monkeypatch.setattr(viton, "split_ids", lambda: {"999999_0"})
    with pytest.raises(DataError, match="photos of the committed split"):
        viton.check_viton(make_viton(tmp_path / "other"))


def test_without_a_copy_the_set_is_listed_as_not_fetched_and_evaluate_says_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(viton.ENV_VITON_DIR, str(tmp_path / "none"))
    code, out, _ = run_cli(capsys, "data", "list")
    assert code == 0 and "not fetched (seglib data fetch viton)" in out
    code, _, err = run_cli(capsys, "evaluate", "--run", "r", "--dataset", "viton", "--quiet")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "the VITON photos are not here; fetch them with `seglib data fetch viton`" in err


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared VITON copy beside the project")
def test_the_shared_copy_and_the_committed_split():
    test = pairs_from_folders(SHARED / "test" / "image", SHARED / "test" / "image-parse-new", name="t").items
    train = pairs_from_folders(SHARED / "train" / "image", SHARED / "train" / "image-parse", name="t").items
    assert (len(test), len(train)) == (2032, 3000)
    folder = paths.splits_dir() / viton.VITON
    split = {name: pd.read_csv(folder / f"{name}.csv", dtype={"id": str}) for name in ("train", "val", "test")}
    assert {name: len(t) for name, t in split.items()} == {"train": 2008, "val": 304, "test": 2032}
    assert set(split["test"]["id"]) == set(test["id"])
    dev = set(split["train"]["id"]) | set(split["val"]["id"])
    assert dev < set(train["id"]) and not set(split["train"]["id"]) & set(split["val"]["id"])

    def sha1(path):
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()

    test_photos = {sha1(p) for p in test["image_path"]}
    left_out = train[~train["id"].isin(dev)]
    assert len(left_out) == 688 and all(sha1(p) in test_photos for p in left_out["image_path"])
    assert not any(sha1(p) in test_photos for p in train[train["id"].isin(dev)]["image_path"])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared VITON copy beside the project")
def test_data_split_viton_reproduces_the_committed_split(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(viton.ENV_VITON_DIR, str(SHARED))
    code, _, err = run_cli(capsys, "data", "split", "viton", "--out", tmp_path)
    assert code == 0, err
    for name in ("train.csv", "val.csv", "test.csv", "folds.csv"):
        assert (tmp_path / name).read_bytes() == (paths.splits_dir() / viton.VITON / name).read_bytes(), name
