"""seglib.training.engine: learning, checkpoints, resume, interruption, divergence, distributed training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import one_fast

from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.infra.errors import SeglibError
from seglib.losses import DiceBCELoss
from seglib.metrics import batch_iou_torch
from seglib.models.model import UNet
from seglib.profiles import make_config
from seglib.training.engine import TrainingDiverged, stop_after, train

TINY = {"base_channels": 4, "depth": 2, "input_size": 32, "cache_max_side": 64, "batch_size": 3,
        "limit_train": 0, "limit_val": 0, "augment": "light", "epochs": 4, "threads": 1}


def tiny_config(**changes):
    return make_config("smoke", {**TINY, **changes})


def test_tiny_model_overfits_one_batch(synthetic_splits):
    from seglib.data.dataset import SegmentationDataset
    from seglib.transforms.pipelines import eval_transform

    folder, splits = synthetic_splits
    ds = SegmentationDataset.from_split("train", folder, splits, transform=eval_transform(32))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = UNet(base_channels=8, depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = DiceBCELoss()
    losses, ious = [], []
    for _ in range(60):
        logits = model(batch["image"])
        loss = loss_fn(logits, batch["mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        ious.append(batch_iou_torch(logits.detach(), batch["mask"]).mean().item())
    assert losses[-1] < 0.5 * losses[0]
    assert ious[-1] > 0.8 and ious[-1] > ious[0] + 0.2


def test_run_writes_checkpoints_history_and_config(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    result = train(tiny_config(epochs=2), tmp_path / "run", dataset_dir=folder, splits_dir=splits, progress=False)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"best.pt", "last.pt", "config.yaml", "history.csv",
                                                "train_summary.json"}
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert set(history.columns) >= {"train_loss", "val_loss", "val_iou", "lr", "epoch_seconds", "images_per_second"}
    state = load_checkpoint(run / "last.pt")
    for key in ("model_state", "config", "threshold", "input_size", "normalization", "epoch",
                "optimizer_state", "scheduler_state", "scaler_state", "seglib_version", "weights"):
        assert key in state, key
    assert state["input_size"] == 32 and state["epoch"] == 2
    model, cfg = model_from_checkpoint(load_checkpoint(run / "best.pt"))
    assert cfg.base_channels == 4
    assert result.best_epoch in (1, 2)
    best = load_checkpoint(run / "best.pt")
    assert best["val_iou"] == pytest.approx(history["val_iou"].max(), abs=1e-5)


def test_refit_on_train_and_val_trains_on_both_and_keeps_the_last_epoch(synthetic_splits, tmp_path):
    from seglib.data.splits import read_split

    folder, splits = synthetic_splits
    result = train(tiny_config(epochs=3, train_on="train+val"), tmp_path / "run", dataset_dir=folder,
                   splits_dir=splits, progress=False)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 3 and result.best_epoch == 3  # no held-out photos to pick an epoch with
    trained = set(best["data_split"]["train_ids"])
    assert trained == set(read_split("train", splits)["id"]) | set(read_split("val", splits)["id"])
    assert not trained & set(read_split("test", splits)["id"])


def test_rect_geometry_trains_on_inputs_of_the_photos_aspect(synthetic_splits, tmp_path):
    """geometry=rect: batches of 32x24 and 24x32 inputs (the synthetic photos are 4:3 and 3:4), not 32x32."""
    from seglib.training.loaders import make_loaders
    from seglib.training.runtime import Runtime

    folder, splits = synthetic_splits
    cfg = tiny_config(geometry="rect", batch_size=2)
    train_loader, val_loader = make_loaders(cfg, Runtime(torch.device("cpu")), folder, splits)
    shapes = {tuple(batch["image"].shape[2:]) for loader in (train_loader, val_loader) for batch in loader}
    assert shapes <= {(32, 24), (24, 32), (32, 32)} and {(32, 24), (24, 32)} <= shapes
    result = train(cfg, tmp_path / "run", dataset_dir=folder, splits_dir=splits, progress=False)
    assert result.epochs_run == 4 and 0 <= result.best_val_iou <= 1
    assert load_checkpoint(tmp_path / "run" / "best.pt")["config"]["geometry"] == "rect"


def test_distillation_keeps_the_fine_tuned_network_closer_to_mediapipes_predictions(synthetic_splits, tmp_path):
    """distill_weight: fine-tuned on ellipses (not people), the distilled network stays nearer MediaPipe's own
    predictions than the same recipe without it; the run's record names the teacher."""
    from seglib.data.dataset import SegmentationDataset
    from seglib.models.model import teacher_for
    from seglib.transforms.pipelines import eval_transform

    folder, splits = synthetic_splits
    ds = SegmentationDataset.from_split("val", folder, splits, transform=eval_transform(32, multiple=16))
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    distance = {}
    for weight in (0.0, 5.0):
        cfg = tiny_config(model="mediapipe-selfie", encoder_weights="mediapipe", distill_weight=weight, epochs=4,
                          lr=3e-3, augment="none")
        train(cfg, tmp_path / f"run{weight}", dataset_dir=folder, splits_dir=splits, progress=False)
        state = load_checkpoint(tmp_path / f"run{weight}" / "last.pt")
        model, _ = model_from_checkpoint(state)
        with torch.no_grad():
            teacher = torch.sigmoid(teacher_for(cfg)(images))
            distance[weight] = (torch.sigmoid(model.eval()(images)) - teacher).abs().mean().item()
        assert ("distilled toward MediaPipe" in state["weights"]) == bool(weight)
    assert distance[5.0] < 0.5 * distance[0.0], distance  # measured: 0.018 against 0.136


def test_existing_run_is_never_overwritten_silently(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(SeglibError, match="already exists"):
        train(tiny_config(epochs=1), run, dataset_dir=folder, splits_dir=splits, progress=False)
    assert (run / "notes.txt").read_text() == "mine"
    with pytest.raises(SeglibError, match="nothing to resume"):
        train(tiny_config(epochs=1), run, resume=True, dataset_dir=folder, splits_dir=splits, progress=False)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_interrupted_and_resumed_run_matches_uninterrupted(ema_decay, synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    cfg = tiny_config(epochs=4, ema_decay=ema_decay)
    full = train(cfg, tmp_path / "full", dataset_dir=folder, splits_dir=splits, progress=False)
    part = train(cfg, tmp_path / "part", dataset_dir=folder, splits_dir=splits, progress=False,
                 on_epoch_end=stop_after(2))
    assert part.stop_reason == "interrupted" and part.epochs_run == 2
    resumed = train(None, tmp_path / "part", resume=True, dataset_dir=folder, splits_dir=splits, progress=False)
    a = pd.read_csv(tmp_path / "full" / "history.csv")
    b = pd.read_csv(tmp_path / "part" / "history.csv")
    pd.testing.assert_frame_equal(a[["epoch", "train_loss", "val_loss", "val_iou", "lr"]],
                                  b[["epoch", "train_loss", "val_loss", "val_iou", "lr"]])
    assert resumed.best_val_iou == full.best_val_iou
    wa = load_checkpoint(tmp_path / "full" / "last.pt")["model_state"]
    wb = load_checkpoint(tmp_path / "part" / "last.pt")["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nan_loss_stops_with_a_clear_message(synthetic_splits, tmp_path, monkeypatch):
    folder, splits = synthetic_splits
    monkeypatch.setattr(DiceBCELoss, "forward", lambda self, logits, target: (logits * float("nan")).mean())
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1"):
        train(tiny_config(epochs=2), tmp_path / "run", dataset_dir=folder, splits_dir=splits, progress=False)


def test_a_stop_by_the_time_budget_is_named_in_the_last_line(synthetic_splits, tmp_path, monkeypatch, capsys):
    from seglib.cli import main

    folder, splits = synthetic_splits
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    sets = [f"--set={k}={v}" for k, v in {**TINY, "epochs": 50, "max_train_minutes": 0.0001}.items()]
    assert main(["train", "--profile", "smoke", "--run", "t", "--data-dir", str(folder), "--splits-dir", str(splits),
                 *sets]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "1 epochs in" in last and last.endswith("stopped: time budget of 0.0001 min reached")


def test_train_resume_reads_the_checkpoint_once_and_prints_each_epoch(synthetic_splits, tmp_path, monkeypatch,
                                                                      capsys):
    from seglib.cli import main
    from seglib.training import engine

    folder, splits = synthetic_splits
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    train(tiny_config(epochs=2), tmp_path / "runs" / "r", dataset_dir=folder, splits_dir=splits, progress=False,
          on_epoch_end=stop_after(1))
    reads = []
    monkeypatch.setattr(engine, "load_checkpoint", lambda path: reads.append(path) or load_checkpoint(path))
    capsys.readouterr()
    assert main(["train", "--run", "r", "--resume", "--data-dir", str(folder), "--splits-dir", str(splits)]) == 0
    assert len(reads) == 1
    out = capsys.readouterr().out
    assert "resuming after epoch 1 of 2" in out and "epoch   2/2" in out


def test_on_epoch_end_is_called_after_each_saved_epoch(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    seen = []

    def check(epoch):
        seen.append((epoch, load_checkpoint(tmp_path / "run" / "last.pt")["epoch"]))

    train(tiny_config(epochs=2), tmp_path / "run", dataset_dir=folder, splits_dir=splits, progress=False,
          on_epoch_end=check)
    assert seen == [(1, 1), (2, 2)]


def _seglib(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "seglib", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def _train_args(folder, splits, run, epochs=4):
    sets = [f"--set={k}={v}" for k, v in {**TINY, "epochs": epochs}.items()]
    return ["train", "--profile", "smoke", "--run", run, "--data-dir", str(folder), "--splits-dir", str(splits), *sets]


# Where the SIGKILL lands, as code run in the child before `seglib train` starts.
KILL_POINTS = {
    # in the middle of epoch 2's training steps: nothing of epoch 2 is saved
    "mid-epoch": """
        import seglib.training.engine as eng, torch
        real_validate, real_step, seen = eng.validate, torch.optim.AdamW.step, []
        def validate(*a, **k):
            seen.append(1)
            return real_validate(*a, **k)
        def step(self, *a, **k):
            if seen:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self, *a, **k)
        eng.validate, torch.optim.AdamW.step = validate, step
    """,
    # half-way through writing epoch 2's first checkpoint file
    "mid-write": """
        import seglib.checkpoint as ck
        real_save = ck.torch.save
        def save(obj, f):  # f: the open temporary file (seglib.checkpoint writes through a Python file)
            if obj["epoch"] == 2:
                f.write(b"PK half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real_save(obj, f)
        ck.torch.save = save
    """,
    # after epoch 2's first file is in place (best.pt if it improved, else last.pt), before the next
    "between-writes": """
        import seglib.training.engine as eng
        real_save = eng.save_checkpoint
        def save(state, path):
            out = real_save(state, path)
            if state["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        eng.save_checkpoint = save
    """,
}


@pytest.fixture
def uninterrupted_run(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    runs = tmp_path / "full-runs"
    full = _seglib(*_train_args(folder, splits, "full"), env={"SEGLIB_RUNS_DIR": str(runs)})
    assert full.returncode == 0, full.stderr
    return runs / "full"


@pytest.mark.parametrize("kill_point", one_fast(sorted(KILL_POINTS), "mid-write"))
def test_sigkill_keeps_last_good_checkpoint_and_resume_matches(kill_point, synthetic_splits, tmp_path,
                                                              uninterrupted_run):
    """SIGKILL at several points of epoch 2: last.pt stays loadable, and --resume ends exactly like a run
    that was never interrupted (same history, same best and last weights)."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    script = "import os, signal, sys\n" + textwrap.dedent(KILL_POINTS[kill_point]) + textwrap.dedent(f"""
        from seglib.cli import main
        sys.exit(main({_train_args(folder, splits, "k")!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "SEGLIB_RUNS_DIR": str(runs)},
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = load_checkpoint(runs / "k" / "last.pt")
    assert state["epoch"] in (1, 2)
    assert kill_point != "mid-epoch" or state["epoch"] == 1
    assert kill_point != "mid-write" or list((runs / "k").glob(".last.pt.*.tmp")) or \
        list((runs / "k").glob(".best.pt.*.tmp"))
    resumed = _seglib("train", "--run", "k", "--resume", "--data-dir", str(folder), "--splits-dir", str(splits),
                      env={"SEGLIB_RUNS_DIR": str(runs)})
    assert resumed.returncode == 0, resumed.stderr
    assert not list((runs / "k").glob(".*.tmp"))  # a half-written checkpoint's temporary file is cleared
    cols = ["epoch", "train_loss", "val_loss", "val_iou", "lr"]
    pd.testing.assert_frame_equal(pd.read_csv(runs / "k" / "history.csv")[cols],
                                  pd.read_csv(uninterrupted_run / "history.csv")[cols])
    for name in ("best.pt", "last.pt"):
        a = load_checkpoint(runs / "k" / name)["model_state"]
        b = load_checkpoint(uninterrupted_run / name)["model_state"]
        assert all(torch.equal(a[k], b[k]) for k in b), name


@pytest.mark.parametrize("signum, status", one_fast([(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                                                    (signal.SIGTERM, 143)))
def test_sigint_and_sigterm_stop_cleanly_after_saving(synthetic_splits, tmp_path, signum, status):
    """Ctrl-C, and SIGTERM as `timeout`, `kill` or a batch scheduler send it: the last epoch is kept, the way to
    resume is said, and the exit status is the shell's (not 0: the training did not finish)."""
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "seglib", *_train_args(folder, splits, "c", epochs=100_000)],
                            env={**os.environ, "SEGLIB_RUNS_DIR": str(runs)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a shell's background job inherits SIGINT ignored; give the child the default back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not (runs / "c" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert "interrupted" in out and "--resume" in out
    assert "Traceback" not in err
    assert load_checkpoint(runs / "c" / "last.pt")["epoch"] >= 1


@pytest.mark.slow
def test_torchrun_two_processes_gloo(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    runs = tmp_path / "runs"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "--", "seglib", *_train_args(folder, splits, "ddp", 2)],
        env={**os.environ, "SEGLIB_RUNS_DIR": str(runs), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = pd.read_csv(runs / "ddp" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert load_checkpoint(runs / "ddp" / "last.pt")["epoch"] == 2
    assert "x2" in proc.stdout  # logged once, by rank 0, with the world size
    assert proc.stdout.count("epoch   1/2") == 1
