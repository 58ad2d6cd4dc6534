"""seglib.runs: run names, the run folder's files and state, and the threshold that belongs to a checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seglib.infra.errors import ConfigError, SeglibError
from seglib.runs import BEST, LAST, SUMMARY, Run, check_run_name, checkpoint_or_run, same_checkpoint


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "/abs", "a\\b", "with space", None, "nl\n",
                                 "x" * 101])
def test_run_names_are_plain_names(bad):
    with pytest.raises(ConfigError, match="run name") as caught:
        check_run_name(bad)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200  # one line, even for a long name


def test_a_name_with_a_trailing_newline_or_too_long_creates_nothing(tmp_path, monkeypatch, capsys):
    from seglib.cli import main

    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_DATA_DIR", str(tmp_path / "no-data"))  # the name must be refused before data is read
    for name in ("nl\n", "x" * 300):
        assert main(["train", "--profile", "smoke", "--run", name]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "seglib: error: run name" in err and "Traceback" not in err
    assert check_run_name("x" * 100) == "x" * 100
    assert not (tmp_path / "runs").exists()


def test_a_name_lives_under_the_runs_folder_never_the_current_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r1").mkdir()  # a folder of that name in the working directory is ignored
    assert Run.named("r1").dir == tmp_path / "runs" / "r1"
    assert Run.resolve("r1") == Run.named("r1")
    assert Run.resolve(tmp_path / "r1").dir == tmp_path / "r1"  # a Path is taken as the folder it names


def test_a_command_line_name_is_a_checkpoint_file_or_a_run(tmp_path, monkeypatch):
    """`seglib soup` and `seglib generality --val` read RUN_OR_CHECKPOINT one way: a `.pt` name or an existing
    file is a checkpoint file (even one not there yet: the command says so), any other name a run under runs/."""
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.pth").write_bytes(b"x")
    (tmp_path / "r1").mkdir()  # a folder is never taken for a run or a checkpoint
    assert checkpoint_or_run("soup.pt") == Path("soup.pt")
    assert checkpoint_or_run("weights.pth") == Path("weights.pth")
    assert checkpoint_or_run("r1") == Run(tmp_path / "runs" / "r1")
    with pytest.raises(ConfigError, match="plain name"):
        checkpoint_or_run("no/such")


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


def test_same_checkpoint_matches_file_epoch_and_tta(tmp_path):
    metrics = {"threshold": 0.4, "checkpoint": "runs/r/best.pt", "checkpoint_epoch": 3, "tta": True}
    assert same_checkpoint(metrics, 3, True, "best.pt")
    assert not same_checkpoint(metrics, 3, True, "last.pt")
    assert not same_checkpoint(metrics, 4, True, "best.pt") and not same_checkpoint(metrics, 3, False, "best.pt")


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


def _left_by_a_killed_replacement(tmp_path) -> Run:
    """What SIGKILL during `train --overwrite`, before the new run's first epoch, leaves: the finished old run moved
    aside, the new folder holding only its config.yaml."""
    run = Run(tmp_path / "r")
    run.dir.mkdir()
    for name, content in ((BEST, b"old best"), (LAST, b"old last"), (SUMMARY, b"{}")):
        (run.dir / name).write_bytes(content)
    run.dir.rename(run.replaced_backup)
    run.dir.mkdir()
    run.config_file.write_text("seed: 7\n")
    return run


def test_a_run_left_aside_by_a_killed_replacement_is_found_by_any_look_at_it(tmp_path, caplog):
    for look in (lambda run: run.require(), lambda run: run.state(), lambda run: run.training_decision(False)):
        run = _left_by_a_killed_replacement(tmp_path)
        caplog.clear()
        look(run)
        assert "put back the previous run from .r.replaced" in caplog.text
        assert run.best.read_bytes() == b"old best" and run.state() == "trained"
        assert not run.replaced_backup.exists() and not run.config_file.exists()
        shutil.rmtree(run.dir)


def test_a_run_being_replaced_by_a_live_training_is_left_to_it(tmp_path):
    from seglib.infra import locks

    run = _left_by_a_killed_replacement(tmp_path)
    with locks.exclusive(run.dir, "run r"):  # the replacement is still at work
        with pytest.raises(SeglibError, match="being replaced by a training in progress"):
            run.require()
        assert run.state() == "other"
    assert run.replaced_backup.is_dir()  # untouched while it ran


def test_a_killed_replacement_that_had_saved_an_epoch_is_the_run(tmp_path, caplog):
    run = _left_by_a_killed_replacement(tmp_path)
    run.last.write_bytes(b"new last")  # killed after its first epoch, before the old run was deleted
    assert run.state() == "unfinished"
    assert "deleted .r.replaced, the run it replaced" in caplog.text
    assert run.last.read_bytes() == b"new last" and not run.replaced_backup.exists()
