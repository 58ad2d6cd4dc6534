"""seglib.cli: user errors give one line and a non-zero exit, and never lose a run or the committed split.

The numbered cases are those of the new-user trial (issue "Nothing a user made is ever lost"); each failed on the
code before it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from seglib.checkpoint import load_checkpoint
from seglib.cli import main

TINY = ["--set", "input_size=32", "--set", "cache_max_side=64", "--set", "threads=1", "--set", "epochs=1"]


@pytest.fixture
def cli_env(synthetic_splits, tmp_path, monkeypatch):
    """(run `seglib ARGS...` returning (exit code, stdout, stderr), runs folder)."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))
    monkeypatch.chdir(tmp_path)

    def run(capsys, *argv: str, data: bool = True):
        extra = ["--data-dir", str(folder), "--splits-dir", str(splits)] if data else []
        code = main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run, runs


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("seglib: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _trained(cli, capsys, runs: Path, name: str = "r1") -> bytes:
    run, _ = cli
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", name, *TINY)
    assert code == 0, err
    return (runs / name / "best.pt").read_bytes()


# case 2: a settings error or a crash while a replacement run starts never deletes the run it was to replace
@pytest.mark.parametrize("bad", [["--set", "lr=nan"],
                                 ["--set", "model=mediapipe-selfie", "--set", "encoder_weights=missing.tflite"]])
def test_overwrite_with_a_bad_setting_keeps_the_old_run(cli_env, capsys, bad):
    run, runs = cli_env
    before = _trained(cli_env, capsys, runs)
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r1", *TINY, *bad, "--overwrite")
    assert code == 2
    _one_line_error(err)
    assert (runs / "r1" / "best.pt").read_bytes() == before
    assert (runs / "r1" / "train_summary.json").is_file()
    assert not (runs / ".r1.replaced").exists()


def test_overwrite_that_crashes_before_its_first_epoch_restores_the_old_run(cli_env, capsys, monkeypatch):
    run, runs = cli_env
    before = _trained(cli_env, capsys, runs)
    import seglib.training.engine

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in the first epoch")

    monkeypatch.setattr(seglib.training.engine, "validate", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(capsys, "train", "--profile", "smoke", "--run", "r1", *TINY, "--overwrite")  # with the synthetic data
    assert (runs / "r1" / "best.pt").read_bytes() == before
    assert not (runs / ".r1.replaced").exists()


def test_overwrite_replaces_the_run_once_the_new_one_saved_an_epoch(cli_env, capsys):
    run, runs = cli_env
    _trained(cli_env, capsys, runs)
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r1", *TINY, "--set", "seed=7",
                       "--overwrite")
    assert code == 0, err
    assert load_checkpoint(runs / "r1" / "best.pt")["config"]["seed"] == 7
    assert not (runs / ".r1.replaced").exists()


# case 4: --resume of a run that does not exist, or that has no last.pt
def test_resume_of_a_missing_run_is_one_line(cli_env, capsys, tmp_path):
    run, runs = cli_env
    code, _, err = run(capsys, "train", "--run", "TYPO", "--resume")
    assert code == 2
    assert "run 'TYPO' not found" in _one_line_error(err)
    (runs / "empty").mkdir(parents=True)
    code, _, err = run(capsys, "train", "--run", "empty", "--resume")
    assert code == 2 and "nothing to resume (no last.pt)" in _one_line_error(err)


# case 5: a bad number is a settings error, and no run folder is left behind
@pytest.mark.parametrize("setting", ["lr=nan", "lr=inf", "weight_decay=-1", "max_train_minutes=-2",
                                     "dice_weight=-1"])
def test_bad_numbers_are_settings_errors_that_leave_nothing(cli_env, capsys, setting):
    run, runs = cli_env
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r2", *TINY, "--set", setting)
    assert code == 2
    assert f"setting {setting.split('=')[0]}=" in _one_line_error(err)
    assert not (runs / "r2").exists()


# case 8: --resume with another --profile is refused instead of silently continuing the saved one
def test_resume_with_another_profile_is_refused(cli_env, capsys):
    run, runs = cli_env
    _trained(cli_env, capsys, runs)
    (runs / "r1" / "train_summary.json").unlink()  # make it look interrupted
    code, _, err = run(capsys, "train", "--run", "r1", "--resume", "--profile", "cpu")
    assert code == 2
    assert "profile: saved 'smoke' vs given 'cpu'" in _one_line_error(err)


# case 9: a run name is a name under runs/, never a path or the current folder
@pytest.mark.parametrize("name", ["", ".", "..", "sub/dir", "/tmp"])
def test_run_names_are_never_paths(cli_env, capsys, name, tmp_path):
    run, _ = cli_env
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "photo.png")
    for argv in (["predict", "--run", name, str(tmp_path / "photo.png"), "--out", str(tmp_path / "o")],
                 ["evaluate", "--run", name, "--split", "val"]):
        code, _, err = run(capsys, *argv, data=False)
        assert code == 2
        assert "run name" in _one_line_error(err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "eval").exists()


def test_a_folder_in_the_working_directory_is_not_taken_for_a_run(cli_env, capsys, tmp_path):
    run, runs = cli_env
    _trained(cli_env, capsys, runs, "r1")
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "best.pt").write_bytes((runs / "r1" / "best.pt").read_bytes())
    code, _, err = run(capsys, "evaluate", "--run", "decoy", "--split", "val")
    assert code == 2 and "run 'decoy' not found" in _one_line_error(err)
    assert not (decoy / "eval").exists()


# case 11: a NaN stop does not claim a checkpoint that was never written
def test_nan_stop_before_any_epoch_says_no_epoch_was_saved(cli_env, capsys, monkeypatch):
    run, runs = cli_env
    from seglib.losses import DiceBCELoss

    monkeypatch.setattr(DiceBCELoss, "forward", lambda self, logits, masks: logits.sum() * float("nan"))
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r3", *TINY)
    assert code == 2
    line = _one_line_error(err)
    assert "no epoch was saved" in line and "last.pt" not in line
    assert not (runs / "r3").exists()


# cases 3, 6 and 7: data split
def test_split_refuses_to_rewrite_a_different_committed_split(capsys, tmp_path):
    from conftest import make_dataset

    folder = make_dataset(tmp_path / "raw40", n=40, scaled_every=0)  # enough photos for seeds to differ
    out = tmp_path / "mine"
    assert main(["data", "split", "--data-dir", str(folder), "--out", str(out), "--folds", "0"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    code = main(["data", "split", "--data-dir", str(folder), "--out", str(out), "--folds", "0", "--seed", "7"])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a different split" in _one_line_error(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["data", "split", "--data-dir", str(folder), "--out", str(out), "--folds", "0"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["data", "split", "--data-dir", str(folder), "--out", str(out), "--folds", "0", "--seed", "7",
                 "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before


def test_split_into_an_unwritable_place_is_one_line(synthetic_splits, capsys, tmp_path):
    folder, _ = synthetic_splits
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        code = main(["data", "split", "--data-dir", str(folder), "--out", str(out)])
        assert code == 2
        assert str(out) in _one_line_error(capsys.readouterr().err)
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("folds", ["-3", "1", "99"])
def test_split_with_an_impossible_number_of_folds_is_refused(synthetic_splits, capsys, tmp_path, folds):
    folder, _ = synthetic_splits
    code = main(["data", "split", "--data-dir", str(folder), "--out", str(tmp_path / "s"), "--folds", folds])
    assert code == 2
    assert f"folds={folds}" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "s").exists()


# case 3 (scoring side): a split that moved training photos into test is refused when test is scored
def test_test_split_holding_training_photos_is_refused(cli_env, capsys, synthetic_splits, tmp_path):
    run, runs = cli_env
    _trained(cli_env, capsys, runs)
    folder, splits = synthetic_splits
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("train", "val", "test"):
        (moved / f"{name}.csv").write_text((splits / f"{name}.csv").read_text())
    (moved / "test.csv").write_text((splits / "train.csv").read_text())  # the training photos, now "test"
    code = main(["evaluate", "--run", "r1", "--split", "test", "--data-dir", str(folder), "--splits-dir", str(moved)])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "trained or selected this model" in line and "test.csv" in line
    assert not (runs / "r1" / "eval" / "test").exists()


# case 12: --out that is a file
def test_out_that_is_a_file_says_so(cli_env, capsys, tmp_path):
    run, runs = cli_env
    _trained(cli_env, capsys, runs)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 60, 30)).save(photo)
    out = tmp_path / "taken"
    out.write_text("mine")
    code, _, err = run(capsys, "predict", "--run", "r1", str(photo), "--out", str(out), data=False)
    assert code == 2 and "is a file, not a folder" in _one_line_error(err)
    assert out.read_text() == "mine"


# case 14: failed commands leave no empty folders
def test_failed_commands_leave_no_empty_folders(cli_env, capsys, tmp_path):
    run, runs = cli_env
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (40, 30)).save(photo)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    code, _, err = run(capsys, "predict", "--checkpoint", str(bad), str(photo), "--out", str(tmp_path / "o1"),
                       data=False)
    assert code == 2 and not (tmp_path / "o1").exists()
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(bad), "--out", str(tmp_path / "o2"), "--split", "val")
    assert code == 2 and not (tmp_path / "o2").exists()
    _trained(cli_env, capsys, runs)
    code = main(["evaluate", "--run", "r1", "--split", "val", "--data-dir", str(tmp_path / "nowhere")])
    assert code == 2 and not (runs / "r1" / "eval").exists()
    capsys.readouterr()
    code = main(["data", "fetch", "--source", str(tmp_path / "no-such-source"), "--dest", str(tmp_path / "d")])
    assert code == 2 and not (tmp_path / "d").exists()
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        import torch

        if not torch.cuda.is_available():
            code, _, err = run(capsys, "predict", "--run", "r1", str(photo), "--out", str(tmp_path / "o3"),
                               "--device", "cuda", data=False)
            assert code == 2 and "CUDA is not available" in err and not (tmp_path / "o3").exists()


def test_export_then_predict_with_onnx_runtime(tmp_path, capsys):
    from conftest import save_tiny_checkpoint
    from PIL import Image

    checkpoint = save_tiny_checkpoint(tmp_path / "best.pt", input_size=32)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 30), (120, 80, 40)).save(photo)
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 0
    assert "any input size" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_file)]) == 2
    assert "already exists" in _one_line_error(capsys.readouterr().err)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.pt")]) == 2
    assert "should end in .onnx" in _one_line_error(capsys.readouterr().err)
    for source in (["--onnx", str(onnx_file)], ["--checkpoint", str(checkpoint)]):
        out = tmp_path / source[0].strip("-")
        assert main(["predict", *source, str(photo), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    a = Image.open(tmp_path / "onnx" / "photo.mask.png")
    b = Image.open(tmp_path / "checkpoint" / "photo.mask.png")
    assert a.size == (50, 30) and a.tobytes() == b.tobytes()


# issue 21: settings on the command line are refused in one line that says what is wrong
@pytest.mark.parametrize(("settings", "says"), [
    (["--set", "epochs=2", "--set", "epochs=3"], r"--set epochs: given twice \(epochs=2, epochs=3\); give it once"),
    (["--set", "seed=-1"], "setting seed=-1: must be 0 or more"),
    (["--set", "epochs=1e12"], r"setting epochs=1e12: too large \(at most 2147483647\)"),
    (["--set", "epochs=2.5"], r"setting epochs=2.5: expected int \(a whole number\), got 2.5"),
])
def test_repeated_negative_or_impossible_settings_are_one_line(cli_env, capsys, settings, says):
    run, runs = cli_env
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r3", *settings)
    assert code == 2
    assert re.fullmatch(f"seglib: error: {says}", _one_line_error(err))
    assert not (runs / "r3").exists()


def test_train_without_cuda_does_not_suggest_an_option_train_lacks(cli_env, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run, _ = cli_env
    code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r4", "--set", "device=cuda")
    line = _one_line_error(err)
    assert code == 2 and "CUDA is not available" in line
    assert "--device" not in line and "--set device=cpu" in line


def test_an_argument_with_a_nul_character_is_a_usage_error(capsys):
    """Found by the fuzz test (seed 2): `data split --out '\\x00'` raised ValueError from the file system."""
    from seglib.cli import main

    with pytest.raises(SystemExit) as info:
        main(["data", "split", "--out", "a\x00b"])
    assert info.value.code == 2 and "NUL character" in capsys.readouterr().err
