"""seglib.infra.locks and the lock per run: one writer at a time, a second one refused at once with one line naming the
holder's pid, a stale lock of a dead process taken over (issue 21, case 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from seglib.checkpoint import load_checkpoint
from seglib.cli import main
from seglib.infra import locks
from seglib.infra.errors import SeglibError

FAST = ["--set", "input_size=32", "--set", "cache_max_side=64", "--set", "threads=1"]
TINY = [*FAST, "--set", "epochs=1"]


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    target = tmp_path / "thing"
    with locks.exclusive(target, "thing x"):
        with pytest.raises(locks.LockedError, match=f"thing x: in use by pid {os.getpid()}"):
            with locks.exclusive(target, "thing x"):
                pass
    assert not locks.lock_path(target).exists()  # released: nothing left behind
    with locks.exclusive(target, "thing x"):  # and free again
        pass


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_said_so(tmp_path, caplog):
    target = tmp_path / "thing"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    locks.lock_path(target).write_text(f"{dead}\nseglib train --run thing\n")  # left by a SIGKILL: no flock held
    with locks.exclusive(target, "thing x"):
        assert locks.lock_path(target).read_text().startswith(f"{os.getpid()}\n")
    assert caplog.messages == [f"thing x: took over a stale lock of pid {dead} (no longer running)"]


def test_reentrant_lets_its_holder_in_again_and_still_refuses_others(tmp_path):
    target = tmp_path / "thing"
    with locks.reentrant(target, "thing x"):
        with locks.reentrant(target, "thing x"):  # a training inside cv: the same holder
            pass
        assert locks.lock_path(target).exists()  # the inner block did not release the outer one
        with pytest.raises(locks.LockedError):
            with locks.exclusive(target, "thing x"):
                pass
    assert not locks.lock_path(target).exists()


def test_a_lock_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SeglibError, match="cannot create the lock file"):
        with locks.exclusive(tmp_path / "file" / "sub" / "thing", "thing x"):
            pass


@pytest.fixture
def cli(synthetic_splits, tmp_path, monkeypatch):
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))

    def run(capsys, *argv):
        code = main([*argv, "--data-dir", str(folder), "--splits-dir", str(splits)])
        out, err = capsys.readouterr()
        return code, out, err

    return run, runs


@pytest.mark.parametrize("how", [["--overwrite"], ["--resume"], []])
def test_train_of_a_run_in_use_is_refused_with_one_line_and_the_run_is_intact(cli, capsys, how):
    run, runs = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    before = {p.name: p.read_bytes() for p in (runs / "r").iterdir()}
    with locks.exclusive(runs / "r", "run runs/r"):  # another `seglib train --run r` at work
        code, _, err = run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY, *how)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"in use by pid {os.getpid()}" in lines[0] and lines[0].startswith("seglib: error: run")
    assert {p.name: p.read_bytes() for p in (runs / "r").iterdir()} == before
    assert not (runs / ".r.replaced").exists()


def test_python_training_of_a_run_in_use_is_refused(synthetic_splits, tmp_path):
    from seglib.profiles import make_config
    from seglib.runs import Run
    from seglib.training.engine import train, train_or_reuse

    folder, splits = synthetic_splits
    run = Run(tmp_path / "r")
    cfg = make_config("smoke", {"input_size": 32, "epochs": 1, "threads": 1})
    with locks.exclusive(run.dir, "run r"):
        with pytest.raises(locks.LockedError, match="in use by pid"):
            train(cfg, run, dataset_dir=folder, splits_dir=splits, progress=False)
        with pytest.raises(locks.LockedError, match="in use by pid"):
            train_or_reuse(cfg, run, dataset_dir=folder)
    assert not run.dir.exists()


# The two children import everything, then wait for the same start signal: they reach `train` together.
CONCURRENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import seglib.training.engine  # noqa: F401 (the slow imports, before the start line)
    from seglib.cli import main
    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    sys.exit(main(sys.argv[3:]))
""")


def test_two_trains_of_the_same_run_started_at_once_one_is_refused_the_other_intact(synthetic_splits, tmp_path):
    """Two `seglib train --run same --profile smoke` at the same time: one trains, the other is refused at once with
    one line naming the first one's pid, and the run is entirely the first one's (its seed in every file)."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    go = tmp_path / "go"
    procs = {}
    for seed in (1, 2):
        argv = ["train", "--profile", "smoke", "--run", "same", *FAST, "--set", "epochs=4", "--set", f"seed={seed}",
                "--data-dir", str(folder), "--splits-dir", str(splits)]
        procs[seed] = subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path / f"ready{seed}"), str(go),
                                        *argv], env={**os.environ, "SEGLIB_RUNS_DIR": str(runs)},
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{s}").exists() for s in procs) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    done = {seed: (p.pid, *p.communicate(timeout=240), p.returncode) for seed, p in procs.items()}
    codes = sorted(code for *_, code in done.values())
    assert codes == [0, 2], done
    winner = next(seed for seed, (*_, code) in done.items() if code == 0)
    loser = 3 - winner
    lines = done[loser][2].strip().splitlines()
    assert len(lines) == 1, done[loser]
    assert lines[0].startswith("seglib: error: run ") and f"in use by pid {done[winner][0]}" in lines[0]
    import yaml

    assert yaml.safe_load((runs / "same" / "config.yaml").read_text())["seed"] == winner
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(runs / "same" / name)["config"]["seed"] == winner
    assert (runs / "same" / "train_summary.json").is_file()
    assert not list(runs.glob(".same.*"))  # no lock file or moved-aside run left


def test_a_lock_removes_the_folders_it_created_for_its_file(tmp_path):
    """A lock on an output that is not made yet (`--out new/masks`) leaves no empty folder behind."""
    target = tmp_path / "new" / "deeper" / "masks"
    with locks.exclusive(target, "thing x"):
        assert locks.lock_path(target).is_file()
    assert list(tmp_path.iterdir()) == []
    with locks.exclusive(target, "thing x"):
        (tmp_path / "new" / "kept.txt").write_text("a file written meanwhile keeps its folder")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["kept.txt"]


def test_an_output_folders_lock_lies_inside_it_and_is_shared_by_its_other_names(tmp_path):
    """`predict --out /tmp` or `--out ~` can lock their folder though its parent cannot be written: the lock file
    is inside; a link to the folder is the same folder."""
    folder = tmp_path / "out"
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    with locks.exclusive(locks.output_folder(folder), "out"):
        assert [p.name for p in folder.iterdir()] == [".seglib-output.lock"]
        with pytest.raises(locks.LockedError, match=f"in use by pid {os.getpid()}"):
            with locks.exclusive(locks.output_folder(tmp_path / "link"), "link"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]  # the folder the lock made is gone again
