"""Training engine: one code path for CPU, one GPU and several GPUs (torchrun + DistributedDataParallel).

`train` reads like its steps: the config, the data, the parts (`training.parts.build_parts`), the run folder
(`Run.writing`), then for each epoch `run_epoch` and `end_epoch`; where it stands lives in a `TrainState` that every
checkpoint saves and a resume restores."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from seglib.checkpoint import load_checkpoint, save_checkpoint, weights_description
from seglib.infra.devices import device_name
from seglib.infra.errors import CheckpointError, ConfigError, SeglibError
from seglib.infra.io import write_json_atomic, write_text_atomic
from seglib.infra.paths import display_path
from seglib.infra.signals import Terminated, stop_on_signals
from seglib.models.model import count_parameters
from seglib.models.model_registry import model_entry
from seglib.profiles import make_config
from seglib.runs import BEST, Run, RunWriting
from seglib.settings import TrainConfig, config_from_dict, config_yaml
from seglib.training import progress as epoch_progress
from seglib.training.loaders import make_loaders, set_epoch, training_split_record
from seglib.training.parts import MEMORY_FORMAT, TrainParts, build_parts
from seglib.training.runtime import Runtime, reduce_mean, setup_runtime
from seglib.training.validation import validate

logger = logging.getLogger(__name__)
FINISHED = ("early-stopping", "time-budget", "completed")  # stop reasons after which a resume has nothing to do


class TrainingDiverged(SeglibError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    best_val_iou: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    images_per_second: float
    stop_reason: str
    history: list[dict] = field(default_factory=list)
    config: TrainConfig | None = None  # what it trained with (a resume: the saved config)


@dataclass
class TrainState:
    """Where a training stands after its last epoch: saved in every checkpoint, restored on resume."""

    epoch: int = 0  # the last epoch trained
    best_iou: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best, for early stopping
    stop_reason: str = ""  # empty while training goes on
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> TrainState:
        history = list(saved["history"])
        return cls(epoch=saved["epoch"], best_iou=saved["best_val_iou"], bad_epochs=saved["bad_epochs"],
                   best_epoch=max((h["epoch"] for h in history if h.get("best")), default=0),
                   stop_reason=saved.get("stop_reason", ""), history=history)

    @property
    def train_seconds(self) -> float:
        return sum(h["epoch_seconds"] for h in self.history)

    def epochs_left(self, cfg: TrainConfig) -> range:
        return range(cfg.epochs + 1 if self.stop_reason in FINISHED else self.epoch + 1, cfg.epochs + 1)

    def record(self, row: dict, cfg: TrainConfig) -> bool:
        """Add an epoch's history row (its `best` flag set here) and the stop it calls for; True when it is the best.
        A refit on train+val has no held-out photos to pick an epoch with: its best is its last epoch."""
        improved = row["val_iou"] > self.best_iou or cfg.train_on == "train+val"
        if improved:
            self.best_iou, self.best_epoch, self.bad_epochs = row["val_iou"], row["epoch"], 0
        else:
            self.bad_epochs += 1
        self.history.append({**row, "best": improved})
        self.epoch = row["epoch"]
        if cfg.patience and self.bad_epochs >= cfg.patience:
            self.stop_reason = "early-stopping"
        elif cfg.max_train_minutes and self.train_seconds > cfg.max_train_minutes * 60:
            self.stop_reason = "time-budget"
        elif self.epoch == cfg.epochs:
            self.stop_reason = "completed"
        return improved


@dataclass
class Training:
    """One training as `train` set it up: what `run_epoch` and `end_epoch` work on."""

    cfg: TrainConfig
    runtime: Runtime
    run: Run
    parts: TrainParts
    train_loader: DataLoader
    val_loader: DataLoader
    state: TrainState
    data_split: dict  # which photos train and validate (recorded in every checkpoint)
    progress: bool = True
    bar: object = None  # the epochs widget in Jupyter, else None (a bar per epoch in a terminal)

    def __post_init__(self):
        self.first_epoch = self.state.epochs_left(self.cfg).start

    @property
    def show(self) -> bool:
        return self.progress and self.runtime.main


def train(cfg: TrainConfig | Callable[[dict], TrainConfig] | None, run_dir: str | Path | Run, *, resume: bool = False,
          overwrite: bool = False, dataset_dir=None, splits_dir=None, progress: bool = True,
          on_epoch_end: Callable[[int], None] | None = None) -> TrainResult:
    """Train the configured network; checkpoints, history and config go to the run folder.

    With `resume`, `cfg=None` continues the saved config, a given one must match it, and a function of the saved
    checkpoint returns it (`resume_config`; the checkpoint is read once). `on_epoch_end(epoch)` is called once each
    epoch is saved (raising KeyboardInterrupt there stops like Ctrl-C: see `stop_after`). Ctrl-C stops after the
    last saved epoch and returns; SIGTERM/SIGHUP do the same, then raise `Terminated` so that the process still stops. Nothing in
    an existing run is touched until the data, the model and the optimiser are built; a replaced run (`overwrite`)
    is only deleted once the new one has saved an epoch, and put back otherwise. The run's lock is held
    throughout: a second writer of the same run is refused at once.
    """
    run = Run.resolve(run_dir if isinstance(run_dir, Run) else Path(run_dir))
    # signals handled here too, not only under `seglib`: a notebook's or papermill kernel's SIGTERM saves/restores
    with stop_on_signals(), writer_lock(run):
        # 1. config, runtime and the run folder's checks (nothing written yet)
        if _main_process():
            run.recover()  # what a killed replacement left: the old run back, before the folder is judged
        cfg, saved = config_to_train(cfg, run, resume)
        runtime = setup_runtime(cfg)
        run.check_can_start(resume=resume, overwrite=overwrite, main=runtime.main)
        # 2. data
        train_loader, val_loader = make_loaders(cfg, runtime, dataset_dir, splits_dir)
        # 3. model, loss, optimiser, schedule, scaler, EMA and teacher; where a resume left them
        parts = build_parts(cfg, runtime, len(train_loader))
        t = Training(cfg, runtime, run, parts, train_loader, val_loader, restore_state(parts, saved, run),
                     training_split_record(train_loader.dataset, val_loader.dataset, splits_dir), progress)
        check_same_split(saved, t.data_split, run)
        # 4. the run folder, created only now; 5. the epochs
        writing = run.writing(fresh=saved is None, overwrite=overwrite, main=runtime.main)
        try:
            with writing, synchronised(runtime), epochs_bar(t):
                announce(t, resumed=saved is not None)
                for epoch in t.state.epochs_left(cfg):
                    started = time.perf_counter()
                    train_loss, seen = run_epoch(t, epoch)
                    end_epoch(t, writing, epoch, train_loss, seen, started)
                    if on_epoch_end is not None:
                        on_epoch_end(epoch)
                    if t.state.stop_reason:
                        break
        except KeyboardInterrupt as exc:
            t.state.stop_reason = "interrupted"
            if runtime.main:
                say_stopped(t, saved_an_epoch=writing.saved)
            if isinstance(exc, Terminated):  # cleaned up; the process was asked to stop, so it still does
                raise
        # 6. the summary
        return finish(t)


def stop_after(last_epoch: int) -> Callable[[int], None]:
    """An `on_epoch_end` callback that stops training like Ctrl-C once epoch `last_epoch` is saved."""
    def stop(epoch: int) -> None:
        if epoch >= last_epoch:
            raise KeyboardInterrupt

    return stop


def config_to_train(cfg: TrainConfig | Callable[[dict], TrainConfig] | None, run: Run,
                    resume: bool) -> tuple[TrainConfig, dict | None]:
    """The config to train with, and the checkpoint a resume continues (None for a new run)."""
    if resume:
        saved = load_resume_state(run)
        if cfg is None:
            return config_from_dict(saved["config"]), saved
        return (cfg(saved) if callable(cfg) else _check_resume_config(cfg, saved)), saved
    if cfg is None:
        raise ConfigError("no configuration given (cfg=None is only for resume=True)")
    return cfg, None


def restore_state(parts: TrainParts, saved: dict | None, run: Run) -> TrainState:
    """A new run's state, or the saved one with the parts put back where the checkpoint left them."""
    if saved is None:
        return TrainState()
    parts.restore(saved, run.last)
    return TrainState.from_checkpoint(saved)


def check_same_split(saved: dict | None, data_split: dict, run: Run) -> None:
    """A resume continues on the photos it started with."""
    recorded = (saved or {}).get("data_split") or {}
    if recorded and {k: data_split.get(k) for k in recorded} != recorded:  # keys a newer seglib added: not compared
        raise ConfigError(f"{display_path(run.last)}: the train/val split changed since this run started "
                          "(data/splits rewritten?); restore the split it was trained on or start again with "
                          "--overwrite")


@contextlib.contextmanager
def synchronised(runtime: Runtime):
    """Every process of a distributed run waits for the others on the way in (the run folder made) and out."""
    if runtime.distributed:
        dist.barrier()
    try:
        yield
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.barrier()


@contextlib.contextmanager
def epochs_bar(t: Training):
    """The epochs widget in Jupyter while training runs."""
    t.bar = epoch_progress.epochs_widget(t.cfg, t.first_epoch, enabled=t.show and epoch_progress.in_jupyter())
    try:
        yield t.bar
    finally:
        if t.bar is not None:
            t.bar.close()


def announce(t: Training, *, resumed: bool) -> None:
    """A new run's config.yaml and first line; a resumed run's line."""
    if not t.runtime.main:
        return
    cfg, runtime = t.cfg, t.runtime
    if resumed:
        logger.info(f"run {t.run.name}: resuming after epoch {t.first_epoch - 1} of {cfg.epochs} "
                    f"(profile {cfg.profile})")
        return
    write_text_atomic(t.run.config_file, config_yaml(cfg))
    logger.info(f"run {t.run.name}: profile {cfg.profile}, "
                f"{model_entry(cfg.model).describe(cfg)} "
                f"({count_parameters(t.parts.model):,} parameters), {len(t.train_loader.dataset)} train / "
                f"{len(t.val_loader.dataset)} val images at {cfg.input_size}px, {cfg.epochs} epochs, "
                f"device {runtime.device}{f' x{runtime.world_size}' if runtime.distributed else ''}, "
                f"weights: {weights_description(cfg)}")


def run_epoch(t: Training, epoch: int) -> tuple[float, int]:
    """One pass over the training photos: (mean loss over every process, images seen here)."""
    cfg, parts, device = t.cfg, t.parts, t.runtime.device
    set_epoch(t.train_loader, cfg, epoch)
    parts.trained.train()
    total_loss, seen = 0.0, 0
    for batch in tqdm(t.train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr,
                      disable=not t.show or t.bar is not None):
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=MEMORY_FORMAT)
        masks = batch["mask"].to(device, non_blocking=True)
        teacher = batch["teacher"].to(device, non_blocking=True) if "teacher" in batch else None  # teacher_masks
        loss = parts.step(images, masks, cfg.distill_weight, teacher)
        if not torch.isfinite(loss):
            raise TrainingDiverged(diverged_message(t, loss.item(), epoch))
        parts.scheduler.step()
        if parts.ema is not None:
            parts.ema.update(parts.model)
        total_loss += loss.item() * images.shape[0]
        seen += images.shape[0]
        if t.bar is not None:
            t.bar.set_postfix_str(f"epoch {epoch}: {seen}/{len(t.train_loader.dataset)} images, "
                                  f"loss {loss.item():.3f}", refresh=True)
    return reduce_mean(total_loss, seen, t.runtime), seen


def diverged_message(t: Training, loss: float, epoch: int) -> str:
    history = t.state.history
    kept = (f"epochs 1-{history[-1]['epoch']} are kept in {display_path(t.run.last)}"
            if t.run.last.is_file() and history else "no epoch was saved")
    return (f"{display_path(t.run.dir)}: loss became {loss} at epoch {epoch}; training stopped (lower lr, currently "
            f"{t.cfg.lr:g}); {kept}")


def end_epoch(t: Training, writing: RunWriting, epoch: int, train_loss: float, seen: int, started: float) -> None:
    """Validate, record the epoch in the state, save the checkpoints and history.csv (main process), report."""
    checked = validate(t.parts.scored, t.val_loader, t.parts.loss_fn, t.cfg, t.runtime, t.parts.use_amp)
    val_loss, val_iou = checked.loss, checked.iou  # several sets: the mean of each set's val mean IoU
    seconds = time.perf_counter() - started
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_iou": val_iou,
           "lr": t.parts.optimizer.param_groups[0]["lr"], "epoch_seconds": seconds,
           "images_per_second": seen * t.runtime.world_size / seconds, **checked.columns()}
    improved = t.state.record(row, t.cfg)
    if not t.runtime.main:
        return
    saved = t.parts.checkpoint(t.cfg, t.state, val_iou, t.data_split)
    if improved:
        save_checkpoint(saved, t.run.best)
    save_checkpoint(saved, t.run.last)
    writing.epoch_saved()  # at once: a stop from here on keeps the new run
    epoch_progress.write_history(t.run.dir, t.state.history)
    if t.bar is not None:
        t.bar.update(1)
        t.bar.set_postfix_str(f"val IoU {val_iou:.4f}, best {t.state.best_iou:.4f}", refresh=True)
    if t.progress:
        left = epoch_progress.minutes_left(t.state.history, t.cfg, t.first_epoch, epoch, t.state.train_seconds)
        logger.info(f"epoch {epoch:3d}/{t.cfg.epochs}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                    f"val IoU {val_iou:.4f}{' *' if improved else '  '}{per_set_note(checked)}  "
                    f"{row['images_per_second']:.1f} img/s"
                    f"  {seconds:.0f} s{left}")


def per_set_note(checked) -> str:
    """' (A 0.9000, B 0.8000)': each set's val mean IoU behind the mean of a run on several sets ('' otherwise)."""
    return f" ({', '.join(f'{k} {v:.4f}' for k, v in checked.per_set.items())})" if checked.per_set else ""


def say_stopped(t: Training, *, saved_an_epoch: bool) -> None:
    """After Ctrl-C or SIGTERM (the run folder already settled by `Run.writing`): say how it stands."""
    if not saved_an_epoch:
        logger.info(f"interrupted before the first epoch was saved; {display_path(t.run.dir)} is as it was")
        return
    done = t.state.history[-1]["epoch"] if t.state.history else 0
    logger.info(f"interrupted: epochs 1-{done} are saved in {display_path(t.run.last)}; "
                f"continue with `seglib train --run {t.run.name} --resume`")


def finish(t: Training) -> TrainResult:
    """The result, and (main process, unless interrupted) train_summary.json."""
    state, runtime = t.state, t.runtime
    speed = epoch_progress.mean_images_per_second(state.history)
    result = TrainResult(t.run.dir, state.best_iou, state.best_epoch, len(state.history), state.train_seconds, speed,
                         state.stop_reason or "completed", state.history, t.cfg)
    if runtime.main and state.stop_reason != "interrupted":
        write_json_atomic(t.run.summary_file, {
            "best_val_iou": state.best_iou, "best_epoch": state.best_epoch, "epochs_run": len(state.history),
            "train_seconds": state.train_seconds, "images_per_second": result.images_per_second,
            "stop_reason": result.stop_reason, "device": device_name(runtime.device),
            "world_size": runtime.world_size, "weights": weights_description(t.cfg),
            "parameters": count_parameters(t.parts.model), "profile": t.cfg.profile,
            "data_split": {k: v for k, v in t.data_split.items() if not k.endswith("_ids") and k != "photo_sha1"},
        })
    return result


def load_resume_state(run: Run) -> dict:
    """The last checkpoint of an interrupted run, with a message saying what to do when it cannot be read."""
    if not run.last.is_file():
        run.recover()  # a run left aside by a replacement killed before its first epoch comes back first
    if not run.last.is_file():
        raise SeglibError(run.nothing_to_resume())
    try:
        return load_checkpoint(run.last)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; cannot resume: start again with --overwrite ({BEST} is not a resume "
                              "point)") from None


def resume_config(saved: dict, profile: str | None, overrides: dict | None) -> TrainConfig:
    """The config a resumed run continues with: the saved one; a profile or settings given again must match it."""
    saved_cfg = config_from_dict(saved["config"])
    if profile is None and not overrides:
        return saved_cfg
    requested = make_config(profile or saved_cfg.profile, overrides)
    return _check_resume_config(requested, saved)


def _main_process() -> bool:
    """Rank 0 under torchrun (read before the process group exists), else True: only it writes the run."""
    return int(os.environ.get("RANK", "0")) == 0 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else True


def writer_lock(run: Run):
    """The run's lock on the main process, nothing on the others (they write nothing)."""
    return run.lock() if _main_process() else contextlib.nullcontext()


def train_or_reuse(cfg: TrainConfig, run: Run, *, retrain: bool = False, dataset_dir=None) -> str:
    """Notebook 03's step (the report runner announces the same decision): reuse a finished run, resume an
    interrupted one, train a new one, or replace it when `retrain`. Returns the decision taken. The run's lock is
    held from the decision to the end of training."""
    with writer_lock(run):
        decision = run.training_decision(retrain)
        if decision == "reuse":
            logger.info(f"Reusing the trained run at {display_path(run.dir)} (set retrain=True to train again)")
        elif decision == "resume":
            logger.info(f"Resuming the unfinished run at {display_path(run.dir)} from its last saved epoch")
            train(cfg, run, resume=True, dataset_dir=dataset_dir)
        else:
            if decision == "retrain":
                logger.info(f"retrain=True: training {display_path(run.dir)} again; the old run is kept until the "
                            "new one has saved its first epoch")
            train(cfg, run, overwrite=decision == "retrain", dataset_dir=dataset_dir)
        return decision


def _check_resume_config(cfg: TrainConfig, saved: dict) -> TrainConfig:
    saved_cfg = config_from_dict(saved["config"])
    diff = {k: (v, getattr(cfg, k)) for k, v in saved_cfg.to_dict().items()
            if getattr(cfg, k) != v and k not in ("threads", "num_workers")}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"--resume continues the saved config; these settings differ: {listed}")
    return saved_cfg
