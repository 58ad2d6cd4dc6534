"""End-to-end guarantees: reproducibility, bad training data, notebook entry points."""

from __future__ import annotations

import json

import pytest

from seglib.cli import main
from seglib.infra.errors import ConfigError

TIMING_KEYS = {"evaluated_at", "seconds", "checkpoint", "dataset_dir", "splits_dir"}


def _train_and_score(folder, splits, runs, name) -> dict:
    common = ["--data-dir", str(folder), "--splits-dir", str(splits)]
    assert main(["train", "--profile", "smoke", "--run", name, "--set", "input_size=32", "--set",
                 "threads=1", *common]) == 0
    assert main(["evaluate", "--run", name, "--split", "val", "--quiet", *common]) == 0
    metrics = json.loads((runs / name / "eval" / "val" / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def test_same_seed_and_profile_give_identical_split_and_metrics(synthetic_splits, tmp_path, monkeypatch, capsys):
    """The split is byte-stable (test_data_splits); two smoke runs give the same metrics.json, timing aside."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))
    first = _train_and_score(folder, splits, runs, "a")
    second = _train_and_score(folder, splits, runs, "b")
    first.pop("run"), second.pop("run")
    assert first == second
    history = [(runs / n / "history.csv").read_text().splitlines() for n in ("a", "b")]
    strip = lambda lines: [",".join(line.split(",")[:5]) for line in lines]  # noqa: E731 (drop timings)
    assert strip(history[0]) == strip(history[1])


def test_train_with_a_corrupt_training_image_fails_with_one_line(synthetic_splits, tmp_path, monkeypatch, capsys):
    folder, splits = synthetic_splits
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    train_ids = (splits / "train.csv").read_text().splitlines()[1].split(",")
    (folder / train_ids[1]).write_bytes(b"\xff\xd8\xff broken")
    code = main(["train", "--profile", "smoke", "--run", "x", "--data-dir", str(folder), "--splits-dir", str(splits)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and train_ids[1].split("/")[-1] in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "runs" / "x").exists()  # a failed start leaves no run folder behind


def test_train_without_data_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGLIB_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["train", "--profile", "smoke", "--run", "x"]) == 2
    assert "seglib data fetch" in capsys.readouterr().err


def test_notebook_parameters_are_validated():
    from seglib.notebook import resolve_params

    with pytest.raises(ConfigError, match="profile 'fastest' unknown"):
        resolve_params(profile="fastest")
    with pytest.raises(Exception, match="use a plain name"):
        resolve_params(profile="smoke", run="../elsewhere")


def test_train_and_resume_on_a_full_disk_are_one_line_naming_the_file(synthetic_splits, small_disk, monkeypatch,
                                                                      capsys):
    """A full disk mid-run stops `train` (and `--resume`) with one line naming the checkpoint it could not write;
    no temporary file is left, the epochs saved before stay resumable, and resuming with space finishes the run."""
    folder, splits = synthetic_splits
    runs = small_disk.root / "runs"
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))
    common = ["--data-dir", str(folder), "--splits-dir", str(splits)]
    train = ["train", "--profile", "smoke", "--run", "x", "--set", "epochs=3", "--set", "threads=1", *common]
    small_disk.leave(350_000)  # room for the first epoch's two checkpoints, not for the second epoch's
    assert main(train) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert "runs/x/" in err[0] and err[0].split(": ")[2].endswith(".pt"), err
    assert "seglib train --run x --resume" in err[0]  # what to do once there is space
    assert not list(runs.rglob("*.tmp")), "a half-written file was left"
    saved = json.loads(json.dumps((runs / "x" / "history.csv").read_text().splitlines()))
    assert len(saved) == 2  # the header and epoch 1

    small_disk.leave(0)
    assert main(["train", "--run", "x", "--resume", *common]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "No space left on device" in err[0] and "unexpected pos" not in err[0], err
    assert "small-disk/runs/" in err[0]  # the file it could not write is named
    assert not list(runs.rglob("*.tmp"))

    small_disk.empty()
    assert main(["train", "--run", "x", "--resume", *common]) == 0
    assert len((runs / "x" / "history.csv").read_text().splitlines()) == 4


def _errors(capsys) -> list[str]:
    """The error lines of a command's stderr (progress bars aside); no traceback anywhere."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error" in line]
