"""SIGTERM and SIGHUP handled like Ctrl-C (issue 21, case 4): training stops after its last saved epoch, a run being
replaced (`--overwrite`) is put back when the replacement saved nothing, the way to resume is said, and the exit
status is the shell's 128 + signal; a replacement killed outright (SIGKILL) is repaired by the next command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import one_fast

from seglib.checkpoint import load_checkpoint
from seglib.cli import main
from seglib.infra.signals import Terminated, exit_code, stop_on_signals

FAST = ["--set", "input_size=32", "--set", "cache_max_side=64", "--set", "threads=1"]
TINY = [*FAST, "--set", "epochs=1"]


def test_sigterm_and_sighup_raise_terminated_a_keyboard_interrupt():
    before = signal.getsignal(signal.SIGTERM)
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        with pytest.raises(KeyboardInterrupt) as caught:
            with stop_on_signals():
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler runs here at the latest
        assert isinstance(caught.value, Terminated) and exit_code(caught.value) == status
    assert exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back after the block


def test_a_second_signal_while_stopping_is_reported_not_raised(capsys):
    with pytest.raises(Terminated):
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except Terminated:
                os.kill(os.getpid(), signal.SIGTERM)  # while cleaning up: must not cut the clean-up short
                raise
    assert "SIGTERM again: already stopping" in capsys.readouterr().err


@pytest.fixture
def cli(synthetic_splits, tmp_path, monkeypatch):
    """(run `seglib ARGS` in this process -> (code, out, err), runs folder, data arguments)."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))
    data = ["--data-dir", str(folder), "--splits-dir", str(splits)]

    def run(capsys, *argv):
        code = main([*argv, *data])
        out, err = capsys.readouterr()
        return code, out, err

    return run, runs, data


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _sigterm_self(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("where", ["moved-aside", "first-epoch"])
def test_sigterm_before_the_first_epoch_of_an_overwrite_puts_the_old_run_back(cli, capsys, monkeypatch, where):
    run, runs, _ = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    before = _files(runs / "r")
    import seglib.infra.io
    import seglib.training.engine

    if where == "moved-aside":  # between moving the old run aside and creating the new folder
        monkeypatch.setattr(seglib.infra.io, "ensure_writable_dir", _sigterm_self)
    else:
        monkeypatch.setattr(seglib.training.engine, "validate", _sigterm_self)
    code, out, err = run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY, "--set", "seed=7",
                         "--overwrite")
    assert code == 143 and "seglib: interrupted (SIGTERM)" in err and "Traceback" not in err
    assert "interrupted before the first epoch was saved" in out
    assert _files(runs / "r") == before  # the finished old run, whole, in its place
    assert not (runs / ".r.replaced").exists() and not (runs / ".r.lock").exists()


def test_sigterm_after_an_epoch_is_saved_exits_143_and_says_how_to_resume(cli, capsys, monkeypatch):
    run, runs, _ = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    import seglib.training.progress

    real = seglib.training.progress.write_history

    def save_then_stop(*args):
        real(*args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(seglib.training.progress, "write_history", save_then_stop)
    code, out, err = run(capsys, "train", "--profile", "smoke", "--run", "r", *FAST, "--set", "epochs=3",
                         "--set", "seed=7", "--overwrite")
    assert code == 143, err
    assert "interrupted: epochs 1-1 are saved" in out and "seglib train --run r --resume" in out
    state = load_checkpoint(runs / "r" / "last.pt")
    assert state["epoch"] == 1 and state["config"]["seed"] == 7  # the new run, resumable
    assert not (runs / ".r.replaced").exists() and not (runs / "r" / "train_summary.json").exists()
    monkeypatch.setattr(seglib.training.progress, "write_history", real)
    assert run(capsys, "train", "--run", "r", "--resume")[0] == 0
    assert load_checkpoint(runs / "r" / "last.pt")["epoch"] == 3


def test_python_training_stopped_by_sigterm_cleans_up_then_still_raises(synthetic_splits, tmp_path, caplog):
    """engine.train installs the handlers itself (a notebook, a papermill kernel): the run is saved, then
    Terminated is raised so that the kernel stops as asked instead of running the next cell."""
    from seglib.profiles import make_config
    from seglib.training.engine import train

    folder, splits = synthetic_splits
    before = signal.getsignal(signal.SIGTERM)
    cfg = make_config("smoke", {"input_size": 32, "cache_max_side": 64, "threads": 1, "epochs": 3})
    caplog.set_level(logging.INFO, logger="seglib")
    with pytest.raises(Terminated):
        train(cfg, tmp_path / "r", dataset_dir=folder, splits_dir=splits, progress=False, on_epoch_end=_sigterm_self)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1
    assert any("--resume" in line for line in caplog.messages)
    assert signal.getsignal(signal.SIGTERM) is before  # and the caller's handler is back


def _child(script: str, argv: list[str], runs) -> subprocess.CompletedProcess:
    """`seglib ARGV` in a fresh process, after `script` (which arranges where the signal lands)."""
    code = (f"import os, signal, sys\n{textwrap.dedent(script)}\n"
            f"from seglib.cli import main\nsys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "SEGLIB_RUNS_DIR": str(runs)},
                          capture_output=True, text=True, timeout=240)


# Where the signal lands in a real `seglib train --overwrite` process (the child signals itself there).
SIGNAL_POINTS = {
    "moved-aside": """
        import seglib.infra.io as io
        real = io.ensure_writable_dir
        def ensure(path):
            os.kill(os.getpid(), SIG)
            return real(path)
        io.ensure_writable_dir = ensure
    """,
    "first-epoch": """
        import torch
        real = torch.optim.AdamW.step
        def step(self, *a, **k):
            os.kill(os.getpid(), SIG)
            return real(self, *a, **k)
        torch.optim.AdamW.step = step
    """,
    "first-epoch-saved": """
        import seglib.training.progress as progress
        real = progress.write_history
        def write(*a):
            real(*a)
            os.kill(os.getpid(), SIG)
        progress.write_history = write
    """,
}


@pytest.mark.parametrize("where", one_fast(sorted(SIGNAL_POINTS), "moved-aside"))
def test_sigterm_at_any_point_of_an_overwrite_leaves_the_old_run_or_the_new_one(cli, capsys, where):
    """A real process: SIGTERM right after the old run is moved aside, during the first epoch, just after the
    first epoch's files. The run folder then holds the old run whole, or the new one (resumable), never a hidden
    one; the exit status is 143."""
    run, runs, data = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    before = _files(runs / "r")
    proc = _child("SIG = signal.SIGTERM\n" + textwrap.dedent(SIGNAL_POINTS[where]),
                  ["train", "--profile", "smoke", "--run", "r", *FAST, "--set", "epochs=2", "--set", "seed=7",
                   "--overwrite", *data], runs)
    assert proc.returncode == 143, proc.stderr
    assert "Traceback" not in proc.stderr and "interrupted (SIGTERM)" in proc.stderr
    assert not (runs / ".r.replaced").exists() and not (runs / ".r.lock").exists()
    if where == "first-epoch-saved":
        assert load_checkpoint(runs / "r" / "last.pt")["config"]["seed"] == 7  # the new run, saved
        assert "seglib train --run r --resume" in proc.stdout
    else:
        assert _files(runs / "r") == before  # the old run, whole


def test_a_replacement_killed_outright_is_repaired_by_the_next_command(cli, capsys, tmp_path):
    """SIGKILL (no clean-up possible) just after `train --overwrite` moved the old run aside: the next command that
    looks at the run puts it back, says so in one line, and evaluates it rather than saying "not trained yet"."""
    run, runs, data = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    before = _files(runs / "r")
    proc = _child("SIG = signal.SIGKILL\n" + textwrap.dedent(SIGNAL_POINTS["first-epoch"]),
                  ["train", "--profile", "smoke", "--run", "r", *TINY, "--set", "seed=7", "--overwrite", *data], runs)
    assert proc.returncode == -signal.SIGKILL
    assert (runs / ".r.replaced").is_dir() and not (runs / "r" / "best.pt").exists()  # what a kill leaves
    code, out, err = run(capsys, "evaluate", "--run", "r", "--split", "val", "--quiet")
    assert code == 0, err
    assert "put back the previous run from .r.replaced" in err and "not trained yet" not in err
    assert not (runs / ".r.replaced").exists()
    after = _files(runs / "r")
    assert all(after[name] == content for name, content in before.items())  # the old run, whole


@pytest.mark.parametrize("command", [["--resume"], ["--overwrite", "--set", "seed=7"]])
def test_after_a_kill_resume_and_overwrite_find_the_old_run_first(cli, capsys, command):
    """The state a SIGKILL leaves, made by hand: `--resume` continues the old run instead of "nothing to resume";
    `--overwrite` says it put the old run back before replacing it, instead of deleting it unseen."""
    run, runs, _ = cli
    assert run(capsys, "train", "--profile", "smoke", "--run", "r", *TINY)[0] == 0
    os.replace(runs / "r", runs / ".r.replaced")
    (runs / "r").mkdir()
    (runs / "r" / "config.yaml").write_text("seed: 7\n")
    (runs / ".r.lock").write_text("999999999\nseglib train --run r --overwrite\n")  # a dead holder's lock file
    args = ["train", "--run", "r", *command] if command[0] == "--resume" else \
        ["train", "--profile", "smoke", "--run", "r", *TINY, *command]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "put back the previous run from .r.replaced" in err
    assert not (runs / ".r.replaced").exists() and (runs / "r" / "train_summary.json").is_file()
