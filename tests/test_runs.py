"""seglib.runs: run names, the run folder's files and state, and the threshold that belongs to a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seglib.errors import ConfigError, SeglibError
from seglib.runs import Run, check_run_name, same_checkpoint


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "/abs", "a\\b", "with space", None])
def test_run_names_are_plain_names(bad):
    with pytest.raises(ConfigError, match="run name"):
        check_run_name(bad)


def test_a_name_lives_under_the_runs_folder_never_the_current_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r1").mkdir()  # a folder of that name in the working directory is ignored
    assert Run.named("r1").dir == tmp_path / "runs" / "r1"
    assert Run.resolve("r1") == Run.named("r1")
    assert Run.resolve(tmp_path / "r1").dir == tmp_path / "r1"  # a Path is taken as the folder it names


def test_state_follows_the_files(tmp_path):
    run = Run(tmp_path / "r")
    assert run.state() == "new" and run.training_decision(retrain=False) == "train"
    run.dir.mkdir()
    (run.dir / "notes.txt").write_text("x")
    assert run.state() == "other"
    with pytest.raises(SeglibError, match="holds no finished or resumable run"):
        run.training_decision(retrain=False)
    run.last.write_bytes(b"x")
    assert run.state() == "unfinished" and run.resumable and run.training_decision(False) == "resume"
    run.summary_file.write_text(json.dumps({"best_val_iou": 0.5}))
    assert run.state() == "trained" and run.training_decision(False) == "reuse"
    assert run.training_decision(True) == "retrain" and run.summary() == {"best_val_iou": 0.5}


def test_require_says_how_to_get_the_checkpoint(tmp_path):
    run = Run(tmp_path / "r")
    with pytest.raises(SeglibError, match="not found .*seglib train --run r"):
        run.require()
    run.dir.mkdir()
    with pytest.raises(SeglibError, match="run r not trained yet"):
        run.require()


def test_val_threshold_belongs_to_its_checkpoint(tmp_path):
    run = Run(tmp_path / "r")
    assert run.val_threshold(3, False) is None
    metrics = {"threshold": 0.4, "checkpoint": "runs/r/best.pt", "checkpoint_epoch": 3, "tta": True}
    run.eval_dir("val").mkdir(parents=True)
    run.metrics_file("val").write_text(json.dumps(metrics))
    threshold, source = run.val_threshold(3, True)
    assert threshold == 0.4 and "chosen on val" in source
    assert run.val_threshold(4, True) is None and run.val_threshold(3, False) is None
    assert same_checkpoint(metrics, 3, True, "best.pt") and not same_checkpoint(metrics, 3, True, "last.pt")
    run.metrics_file("val").write_text(json.dumps({"checkpoint": "best.pt"}))
    with pytest.raises(SeglibError, match="no usable threshold"):
        run.val_threshold(3, True)
    assert isinstance(run.config_file, Path)


def test_a_start_that_saved_nothing_is_undone(tmp_path):
    run = Run(tmp_path / "r")
    run.start(overwrite=False)
    run.config_file.write_text("x: 1\n")
    run.abandon_start(new=True)
    assert not run.dir.exists()  # a new run that saved no epoch leaves nothing
    run.start(overwrite=False)
    run.best.write_bytes(b"old model")
    run.start(overwrite=True)  # the replacement starts: the old run waits aside
    assert run.replaced_backup.is_dir() and not run.best.exists()
    run.config_file.write_text("x: 2\n")
    run.abandon_start(new=True)
    assert run.best.read_bytes() == b"old model" and not run.replaced_backup.exists()
    run.start(overwrite=True)
    run.best.write_bytes(b"new model")
    run.settle_replacement(keep_new=True)
    assert run.best.read_bytes() == b"new model" and not run.replaced_backup.exists()
