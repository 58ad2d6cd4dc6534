"""seglib.data.check: the data set's quirks and one clear line per problem."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seglib.cli import main
from seglib.data.check import check_dataset, relation


def test_relation():
    assert relation((640, 480), (640, 480)) == "same"
    assert relation((1280, 1055), (551, 454)) == "scaled"
    assert relation((640, 480), (480, 640)) == "mismatch"


def test_synthetic_dataset_is_clean_and_quirks_are_counted(synthetic_dataset):
    report = check_dataset(synthetic_dataset)
    assert report.ok, report.problems
    quirks = {q.name: q.count for q in report.quirks}
    assert quirks["mask-smaller-than-image"] == 3  # ids 3, 6, 9 have a half-size mask


def _run_check(folder, capsys) -> tuple[int, list[str]]:
    code = main(["data", "check", "--data-dir", str(folder)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line]


def test_broken_copy_reports_every_problem_one_line_each(synthetic_dataset, capsys):
    folder = synthetic_dataset
    jpg = folder / "Training_Images" / "1.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])  # truncated JPEG
    (folder / "Ground_Truth" / "2.png").unlink()  # deleted mask
    grey = np.array(Image.open(folder / "Ground_Truth" / "4.png"))
    grey[grey == 255] = 128
    grey[0, 0] = 255
    Image.fromarray(grey).save(folder / "Ground_Truth" / "4.png")  # grey values
    code, lines = _run_check(folder, capsys)
    assert code != 0
    assert any("1.jpg" in line and "truncated" in line for line in lines)
    assert any("2.png" in line and "not found" in line for line in lines)
    assert any("4.png" in line and "not binary" in line for line in lines)
    assert "3 problem(s)" in lines[-1]


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        ("mask,image\na.png,a.jpg\n", "wrong columns"),
        ("", "empty file"),
        ("masks,images\n", "header only"),
    ],
)
def test_bad_csv(synthetic_dataset, capsys, csv_text, expected):
    (synthetic_dataset / "train.csv").write_text(csv_text)
    code, lines = _run_check(synthetic_dataset, capsys)
    assert code != 0
    assert any(expected in line and "train.csv" in line for line in lines)


def test_csv_blank_lines_duplicates_and_outside_paths(synthetic_dataset, capsys):
    csv_path = synthetic_dataset / "train.csv"
    lines = csv_path.read_text().splitlines()
    lines += ["", lines[1], "x/../../evil.png,x/Training_Images/1.jpg"]
    csv_path.write_text("\n".join(lines) + "\n")
    code, out = _run_check(synthetic_dataset, capsys)
    assert code != 0
    assert any("blank line" in line for line in out)
    assert any("duplicate of line 2" in line for line in out)
    assert any("outside the data set folder" in line for line in out)


def test_mask_of_inconsistent_size_and_non_image_file(synthetic_dataset, capsys):
    Image.new("L", (10, 40)).save(synthetic_dataset / "Ground_Truth" / "5.png")
    (synthetic_dataset / "Training_Images" / "7.jpg").write_text("not an image at all")
    (synthetic_dataset / "Training_Images" / "8.jpg").write_bytes(b"")
    code, lines = _run_check(synthetic_dataset, capsys)
    assert code != 0
    assert any("5.png" in line and "not a rescale" in line for line in lines)
    assert any("7.jpg" in line and "not an image" in line for line in lines)
    assert any("8.jpg" in line and "empty file" in line for line in lines)


def test_missing_data_set_is_one_clear_line(tmp_path, capsys):
    code = main(["data", "check", "--data-dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_real_data_quirks(real_dataset, capsys):
    assert main(["data", "check", "--data-dir", str(real_dataset)]) == 0
    out = capsys.readouterr().out
    assert "290 image/mask pairs" in out
    assert "mask-smaller-than-image (198)" in out
    assert "non-rgb-image (2)" in out
    assert "duplicate-images (2)" in out
    assert "mask-pinholes (182): masks with pinholes: 4365 specks of background inside the figure" in out
