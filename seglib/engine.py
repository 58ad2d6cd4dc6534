"""Training engine: one code path for CPU, one GPU and several GPUs (torchrun + DistributedDataParallel)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from seglib.checkpoint import (
    cpu_state_dict,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
    weights_description,
)
from seglib.config import display_path
from seglib.data.batching import ShapeBatchSampler, pad_collate
from seglib.data.dataset import SegmentationDataset
from seglib.data.splits import split_fingerprint
from seglib.devices import device_name
from seglib.ema import WeightEMA
from seglib.errors import CheckpointError, ConfigError, SeglibError
from seglib.io import write_json_atomic, write_text_atomic
from seglib.losses import DiceBCELoss, distillation_loss
from seglib.metrics import batch_iou_torch
from seglib.model import architecture, count_parameters, model_for, teacher_for
from seglib.runs import Run
from seglib.runtime import Runtime, reduce_mean, setup_runtime
from seglib.settings import TrainConfig, config_from_dict, config_yaml, input_multiple, make_config
from seglib.signals import Terminated, stop_on_signals
from seglib.training_log import epochs_widget, in_jupyter, mean_images_per_second, minutes_left, write_history


class TrainingDiverged(SeglibError):
    """The loss became NaN or infinite."""


# channels-last on CPU too: faster training steps for the MediaPipe networks (reports/bench/bench.md); results
# equal up to float rounding (a run is no longer bit-identical to one trained before the change)
MEMORY_FORMAT = torch.channels_last


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


def make_loaders(cfg: TrainConfig, runtime: Runtime, dataset_dir=None, splits_dir=None):
    """Datasets (decoded once, cached in memory) and loaders for train and val.

    The split files are read once (`data.snapshot`: one version, checked unchanged after the photos are
    decoded); a val split that shares photos with train is refused. Both datasets carry that snapshot as
    `split_snapshot`, for the record of what trained the run."""
    from seglib.data.snapshot import snapshot_splits
    from seglib.data.splits import check_val_apart_from_train
    from seglib.transforms import eval_transform, train_transform

    multiple = input_multiple(cfg)
    snapshot = snapshot_splits(splits_dir, during="the training data was being read")
    folder = display_path(snapshot.folder)
    if cfg.fold >= 0:  # cross-validation: the fold is the val set, the rest of train+val trains
        train_table, val_table = snapshot.fold_split(cfg.fold)
        names = (f"{folder}/train.csv + val.csv less fold {cfg.fold}", f"{folder}/folds.csv fold {cfg.fold}")
    else:
        train_table, val_table = snapshot.table("train"), snapshot.table("val")
        names = (f"{folder}/train.csv", f"{folder}/val.csv")
    if cfg.train_on == "train+val":  # refit: val trains too; its scores only show that training runs
        train_table = pd.concat([train_table, val_table], ignore_index=True)
    else:  # the epoch (and the threshold) are chosen on val: never on photos that train
        check_val_apart_from_train(train_table["id"], val_table["id"], *names)
    train_ds = SegmentationDataset.from_table(
        train_table, dataset_dir, limit=cfg.limit_train or None,
        transform=train_transform(cfg.input_size, cfg.augment, geometry=cfg.geometry, multiple=multiple),
        max_side=cfg.cache_max_side,
        seed=cfg.seed)
    val_ds = SegmentationDataset.from_table(
        val_table, dataset_dir, limit=cfg.limit_val or None,
        transform=eval_transform(cfg.input_size, geometry=cfg.geometry, multiple=multiple), max_side=cfg.cache_max_side)
    cuda = runtime.device.type == "cuda"
    workers = cfg.num_workers if cfg.num_workers >= 0 else (min(8, os.cpu_count() or 1) if cuda else 0)
    # decode once in the main process: forked workers share the cache instead of decoding every epoch
    train_ds.preload()
    val_ds.preload()
    snapshot.check_unchanged("the training data was being read")
    train_ds.split_snapshot = val_ds.split_snapshot = snapshot
    if cfg.geometry == "rect":
        return _rect_loaders(cfg, runtime, train_ds, val_ds, workers, multiple)
    if runtime.distributed:
        train_sampler = DistributedSampler(train_ds, runtime.world_size, runtime.rank, shuffle=True, seed=cfg.seed)
        val_sampler = DistributedSampler(val_ds, runtime.world_size, runtime.rank, shuffle=False)
    else:
        train_sampler = RandomSampler(train_ds, generator=torch.Generator())
        val_sampler = SequentialSampler(val_ds)
    # persistent workers: starting them every epoch cost more than the epoch itself on a GPU; they read the
    # epoch from shared memory, so augmentation stays a function of (seed, epoch, index)
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=train_sampler,
                              drop_last=len(train_ds) > cfg.batch_size, num_workers=workers, pin_memory=cuda,
                              persistent_workers=workers > 0)
    # validation reads the preloaded cache and only letterboxes: worker start-up would cost more than it saves
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, sampler=val_sampler, num_workers=0, pin_memory=cuda)
    return train_loader, val_loader


def _rect_loaders(cfg: TrainConfig, runtime: Runtime, train_ds, val_ds, workers: int, multiple: int):
    """Loaders of rectangular inputs: batches grouped by input shape (ShapeBatchSampler), padded to the largest."""
    from functools import partial

    from seglib.transforms import input_shape, pad_value

    def shapes(ds):
        return [input_shape(*ds.load(i)[1].shape, cfg.input_size, "rect", multiple) for i in range(len(ds))]

    cuda = runtime.device.type == "cuda"
    collate = partial(pad_collate, image_fill=pad_value())
    train_batches = ShapeBatchSampler(shapes(train_ds), cfg.batch_size, shuffle=True,
                                      drop_last=len(train_ds) > cfg.batch_size, seed=cfg.seed, rank=runtime.rank,
                                      world_size=runtime.world_size)
    val_batches = ShapeBatchSampler(shapes(val_ds), cfg.batch_size, rank=runtime.rank, world_size=runtime.world_size)
    train_loader = DataLoader(train_ds, batch_sampler=train_batches, collate_fn=collate, num_workers=workers,
                              pin_memory=cuda, persistent_workers=workers > 0)
    val_loader = DataLoader(val_ds, batch_sampler=val_batches, collate_fn=collate, num_workers=0, pin_memory=cuda)
    return train_loader, val_loader


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15,
                                                   div_factor=20.0, final_div_factor=200.0)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.lr * 0.01)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def set_epoch(loader: DataLoader, cfg: TrainConfig, epoch: int) -> None:
    """Make epoch `epoch`'s order and augmentation a function of (seed, epoch) alone: resumes replay exactly."""
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.batch_sampler, ShapeBatchSampler):
        loader.batch_sampler.set_epoch(epoch)
        return
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(cfg.seed * 1000 + epoch)


def load_resume_state(run: Run) -> dict:
    """The last.pt of an interrupted run, with a message saying what to do when it cannot be read."""
    if not run.last.is_file():
        run.recover()  # a run left aside by a replacement killed before its first epoch comes back first
    if not run.last.is_file():
        raise SeglibError(run.nothing_to_resume())
    try:
        return load_checkpoint(run.last)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; cannot resume: start again with --overwrite (best.pt is not a resume "
                              "point)") from None


def resume_config(saved: dict, profile: str | None, overrides: dict | None) -> TrainConfig:
    """The config a resumed run continues with: the saved one; a profile or settings given again must match it."""
    saved_cfg = config_from_dict(saved["config"])
    if profile is None and not overrides:
        return saved_cfg
    requested = make_config(profile or saved_cfg.profile, overrides)
    return _check_resume_config(requested, saved)


def train(cfg: TrainConfig | None, run_dir: str | Path | Run, *, resume: bool = False, overwrite: bool = False,
          dataset_dir=None, splits_dir=None, progress: bool = True, stop_after_epoch: int | None = None,
          on_epoch_end: Callable[[int], None] | None = None, log=print) -> TrainResult:
    """Train the configured network; checkpoints, history and config go to the run folder.

    `cfg=None` with `resume` continues the saved config. `on_epoch_end(epoch)` is called once each epoch is saved
    (raising KeyboardInterrupt there stops like Ctrl-C); `stop_after_epoch` is its shorthand for tests. Ctrl-C
    stops after the last saved epoch and returns; SIGTERM/SIGHUP do the same, then raise `Terminated` so that the
    process still stops. Nothing in an existing run is touched until the data, the model and the optimiser are
    built; a replaced run (`overwrite`) is only deleted once the new one has saved an epoch, and put back
    otherwise. The run's lock is held throughout: a second writer of the same run is refused at once.
    """
    run = Run.resolve(run_dir if isinstance(run_dir, Run) else Path(run_dir))
    # signals handled here too, not only under `seglib`: a notebook's or papermill kernel's SIGTERM saves/restores
    with stop_on_signals(), writer_lock(run):
        return _train(cfg, run, resume=resume, overwrite=overwrite, dataset_dir=dataset_dir, splits_dir=splits_dir,
                      progress=progress, stop_after_epoch=stop_after_epoch, on_epoch_end=on_epoch_end, log=log)


def _main_process() -> bool:
    """Rank 0 under torchrun (read before the process group exists), else True: only it writes the run."""
    return int(os.environ.get("RANK", "0")) == 0 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else True


def writer_lock(run: Run):
    """The run's lock on the main process, nothing on the others (they write nothing)."""
    return run.lock() if _main_process() else contextlib.nullcontext()


def _train(cfg: TrainConfig | None, run: Run, *, resume: bool, overwrite: bool, dataset_dir, splits_dir,
           progress: bool, stop_after_epoch: int | None, on_epoch_end, log) -> TrainResult:
    run_dir = run.dir
    if _main_process():
        run.recover()  # what a killed replacement left: the old run back, before the folder is judged
    # 1. config, runtime and run folder checks (nothing written yet)
    saved = None
    if resume:
        saved = load_resume_state(run)
        cfg = config_from_dict(saved["config"]) if cfg is None else _check_resume_config(cfg, saved)
    elif cfg is None:
        raise ConfigError("no configuration given (cfg=None is only for resume=True)")
    runtime = setup_runtime(cfg)
    run.check_can_start(resume=resume, overwrite=overwrite, main=runtime.main)
    # 2. data
    train_loader, val_loader = make_loaders(cfg, runtime, dataset_dir, splits_dir)
    # 3. model, loss, optimiser, schedule, mixed precision
    torch.manual_seed(cfg.seed)
    model = model_for(cfg).to(runtime.device)
    cuda = runtime.device.type == "cuda"
    model = model.to(memory_format=MEMORY_FORMAT)
    loss_fn = DiceBCELoss.for_config(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer, len(train_loader))
    use_amp = cuda and cfg.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    teacher = teacher_for(cfg).to(runtime.device, memory_format=MEMORY_FORMAT) if cfg.distill_weight else None
    history: list[dict] = []
    start_epoch, best_iou, best_epoch, bad_epochs = 1, -1.0, 0, 0
    if saved is not None:
        try:
            if ema is not None:  # model_state holds the averaged weights; the raw ones are kept beside them
                model.load_state_dict(saved["raw_model_state"])
                ema.load_state_dict(saved["ema_state"], saved["model_state"])
            else:
                model.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(saved["optimizer_state"])
            scheduler.load_state_dict(saved["scheduler_state"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{display_path(run.last)}: cannot resume from it ({type(exc).__name__}: "
                                  f"{str(exc)[:120]}); start again with --overwrite") from None
        if saved.get("scaler_state"):
            scaler.load_state_dict(saved["scaler_state"])
        history = list(saved["history"])
        start_epoch = saved["epoch"] + 1
        best_iou = saved["best_val_iou"]
        bad_epochs = saved["bad_epochs"]
        best_epoch = max((h["epoch"] for h in history if h.get("best")), default=0)
        if saved.get("stop_reason") in ("early-stopping", "time-budget", "completed"):
            start_epoch = cfg.epochs + 1
    split_record = training_split_record(train_loader.dataset, val_loader.dataset, splits_dir)
    if saved is not None and saved.get("data_split") and saved["data_split"] != split_record:
        raise ConfigError(f"{display_path(run.last)}: the train/val split changed since this run started "
                          "(data/splits rewritten?); restore the split it was trained on or start again with "
                          "--overwrite")
    ddp_model = model
    if runtime.distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if cuda else None)
    scored_model = ema.module if ema is not None else ddp_model  # what is validated and saved as model_state

    stop_reason = saved.get("stop_reason", "") if saved else ""
    train_seconds = sum(h["epoch_seconds"] for h in history)
    saved_an_epoch = saved is not None
    created = saved is None and not run.dir.exists()  # a folder this call makes (removed again if it saves nothing)
    show = progress and runtime.main
    epochs_bar = epochs_widget(cfg, start_epoch, enabled=show and in_jupyter())  # terminal: a bar per epoch
    try:
        # 4. only now is the run folder created (an old run being replaced is moved aside, not deleted); inside
        # the try, so that a signal even between moving the old run aside and creating the new folder restores it
        if saved is None:
            run.start(overwrite=overwrite, main=runtime.main)
        if runtime.distributed:
            dist.barrier()
        if runtime.main and saved is None:
            write_text_atomic(run.config_file, config_yaml(cfg))
            log(f"run {run.name}: profile {cfg.profile}, "
                f"{architecture(cfg.model, cfg.base_channels, cfg.depth, cfg.encoder)} "
                f"({count_parameters(model):,} parameters), {len(train_loader.dataset)} train / "
                f"{len(val_loader.dataset)} val images at {cfg.input_size}px, {cfg.epochs} epochs, "
                f"device {runtime.device}{f' x{runtime.world_size}' if runtime.distributed else ''}, "
                f"weights: {weights_description(cfg)}")
        elif runtime.main:
            log(f"run {run.name}: resuming after epoch {start_epoch - 1} of {cfg.epochs} (profile {cfg.profile})")

        # 5. the loop
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            set_epoch(train_loader, cfg, epoch)
            ddp_model.train()
            total_loss, seen = 0.0, 0
            for batch in tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, file=sys.stderr,
                              disable=not show or epochs_bar is not None):
                images = batch["image"].to(runtime.device, non_blocking=True)
                masks = batch["mask"].to(runtime.device, non_blocking=True)
                images = images.contiguous(memory_format=MEMORY_FORMAT)
                loss = train_step(ddp_model, images, masks, loss_fn, optimizer, scaler, use_amp=use_amp,
                                  teacher=teacher, distill_weight=cfg.distill_weight)
                if not torch.isfinite(loss):
                    kept = (f"epochs 1-{history[-1]['epoch']} are kept in {display_path(run.last)}"
                            if run.last.is_file() and history else "no epoch was saved")
                    raise TrainingDiverged(
                        f"{display_path(run_dir)}: loss became {loss.item()} at epoch {epoch}; training stopped "
                        f"(lower lr, currently {cfg.lr:g}); {kept}")
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                total_loss += loss.item() * images.shape[0]
                seen += images.shape[0]
                if epochs_bar is not None:
                    epochs_bar.set_postfix_str(f"epoch {epoch}: {seen}/{len(train_loader.dataset)} images, "
                                               f"loss {loss.item():.3f}", refresh=True)
            train_loss = reduce_mean(total_loss, seen, runtime)
            val_loss, val_iou = validate(scored_model, val_loader, loss_fn, cfg, runtime, use_amp)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            # a refit on train+val has no held-out photos to pick an epoch with: best.pt is the last epoch
            improved = val_iou > best_iou or cfg.train_on == "train+val"
            if improved:
                best_iou, best_epoch, bad_epochs = val_iou, epoch, 0
            else:
                bad_epochs += 1
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_iou": val_iou,
                   "lr": optimizer.param_groups[0]["lr"], "epoch_seconds": seconds,
                   "images_per_second": seen * runtime.world_size / seconds, "best": improved}
            history.append(row)
            if cfg.patience and bad_epochs >= cfg.patience:
                stop_reason = "early-stopping"
            elif cfg.max_train_minutes and train_seconds > cfg.max_train_minutes * 60:
                stop_reason = "time-budget"
            elif epoch == cfg.epochs:
                stop_reason = "completed"
            if runtime.main:
                state = make_checkpoint(scored_model, cfg, epoch=epoch, val_iou=val_iou, best_val_iou=best_iou,
                                        optimizer=optimizer, scheduler=scheduler, scaler=scaler, history=history,
                                        bad_epochs=bad_epochs, stop_reason=stop_reason)
                state["data_split"] = split_record
                if ema is not None:
                    state["raw_model_state"] = cpu_state_dict(model)
                    state["ema_state"] = ema.state_dict()
                if improved:
                    save_checkpoint(state, run.best)
                save_checkpoint(state, run.last)
                first_save, saved_an_epoch = not saved_an_epoch, True  # at once: a stop from here on keeps it
                write_history(run_dir, history)
                if first_save:
                    run.settle_replacement(keep_new=True, main=runtime.main)
                if epochs_bar is not None:
                    epochs_bar.update(1)
                    epochs_bar.set_postfix_str(f"val IoU {val_iou:.4f}, best {best_iou:.4f}", refresh=True)
                if progress:
                    left = minutes_left(history, cfg, start_epoch, epoch, train_seconds)
                    log(f"epoch {epoch:3d}/{cfg.epochs}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                        f"val IoU {val_iou:.4f}{' *' if improved else '  '}  {row['images_per_second']:.1f} img/s"
                        f"  {seconds:.0f} s{left}")
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if stop_reason:
                break
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        stop_reason = "interrupted"
        if runtime.main:
            _stopped(run, history, saved_an_epoch=saved_an_epoch, created=created, log=log)
        if isinstance(exc, Terminated):  # cleaned up; the process was asked to stop, so it still does
            raise
    except BaseException:
        if not saved_an_epoch:
            run.abandon_start(new=created, main=runtime.main)
        raise
    finally:
        if epochs_bar is not None:
            epochs_bar.close()
        if runtime.distributed and dist.is_initialized():
            dist.barrier()
    result = TrainResult(run_dir, best_iou, best_epoch, len(history), train_seconds,
                         mean_images_per_second(history), stop_reason or "completed", history)
    if runtime.main and stop_reason != "interrupted":
        write_json_atomic(run.summary_file, {
            "best_val_iou": best_iou, "best_epoch": best_epoch, "epochs_run": len(history),
            "train_seconds": train_seconds, "images_per_second": result.images_per_second,
            "stop_reason": result.stop_reason, "device": device_name(runtime.device), "world_size": runtime.world_size,
            "weights": weights_description(cfg), "parameters": count_parameters(model), "profile": cfg.profile,
            "data_split": {k: v for k, v in split_record.items() if not k.endswith("_ids")},
        })
    return result


def _stopped(run: Run, history: list[dict], *, saved_an_epoch: bool, created: bool, log) -> None:
    """After Ctrl-C or SIGTERM: put a replaced run back when nothing was saved, and say how to go on."""
    if not saved_an_epoch:
        run.abandon_start(new=created)
        log(f"interrupted before the first epoch was saved; {display_path(run.dir)} is as it was")
        return
    run.settle_replacement(keep_new=True)  # stopped just after the first save, before the old run was deleted
    done = history[-1]["epoch"] if history else 0
    log(f"interrupted: epochs 1-{done} are saved in {display_path(run.last)}; "
        f"continue with `seglib train --run {run.name} --resume`")


def train_or_reuse(cfg: TrainConfig, run: Run, *, retrain: bool = False, dataset_dir=None, log=print) -> str:
    """Notebook 03's step (the report runner announces the same decision): reuse a finished run, resume an
    interrupted one, train a new one, or replace it when `retrain`. Returns the decision taken. The run's lock is
    held from the decision to the end of training."""
    with writer_lock(run):
        return _train_or_reuse(cfg, run, retrain=retrain, dataset_dir=dataset_dir, log=log)


def _train_or_reuse(cfg: TrainConfig, run: Run, *, retrain: bool, dataset_dir, log) -> str:
    decision = run.training_decision(retrain)
    if decision == "reuse":
        log(f"Reusing the trained run at {display_path(run.dir)} (set retrain=True to train again)")
    elif decision == "resume":
        log(f"Resuming the unfinished run at {display_path(run.dir)} from its last saved epoch")
        train(cfg, run, resume=True, dataset_dir=dataset_dir, log=log)
    else:
        if decision == "retrain":
            log(f"retrain=True: training {display_path(run.dir)} again; the old run is kept until the new one "
                "has saved its first epoch")
        train(cfg, run, overwrite=decision == "retrain", dataset_dir=dataset_dir, log=log)
    return decision


def training_split_record(train_ds, val_ds, splits_dir=None) -> dict:
    """Which photos trained and validated the run, and a fingerprint of the split files it came from."""
    record = {"train_ids": [str(i) for i in train_ds.items["id"]], "val_ids": [str(i) for i in val_ds.items["id"]]}
    snapshot = getattr(train_ds, "split_snapshot", None)  # the very version make_loaders read, when it has one
    record.update(snapshot.fingerprint() if snapshot is not None else split_fingerprint(splits_dir))
    return record


def train_step(model, images: torch.Tensor, masks: torch.Tensor, loss_fn, optimizer, scaler, *,
               use_amp: bool = False, teacher=None, distill_weight: float = 0.0) -> torch.Tensor:
    """Forward, loss (plus `distill_weight` x the distillation term toward a frozen `teacher`), backward and one
    optimiser step on a batch (mixed precision with `use_amp`); a non-finite loss is returned before any step, for
    the caller to stop on. The benchmark times exactly this."""
    with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=use_amp):
        logits = model(images)
        loss = loss_fn(logits.float(), masks)
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(images)
            loss = loss + distill_weight * distillation_loss(logits, teacher_logits)
    if not torch.isfinite(loss):
        return loss
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


@torch.inference_mode()
def validate(model, loader, loss_fn, cfg: TrainConfig, runtime: Runtime, use_amp: bool) -> tuple[float, float]:
    """Mean loss and mean per-image IoU at the training size (model selection only; scoring is in evaluate)."""
    was_training = model.training
    model.eval()
    loss_sum, iou_sum, n = 0.0, 0.0, 0
    for batch in loader:
        images = batch["image"].to(runtime.device)
        masks = batch["mask"].to(runtime.device)
        with torch.autocast(device_type=runtime.device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images).float()
        loss_sum += loss_fn(logits, masks).item() * images.shape[0]
        iou_sum += batch_iou_torch(logits, masks, threshold=cfg.threshold, from_logits=True).sum().item()
        n += images.shape[0]
    model.train(was_training)
    if runtime.distributed:
        totals = torch.tensor([loss_sum, iou_sum, float(n)], dtype=torch.float64, device=runtime.device)
        dist.all_reduce(totals)
        loss_sum, iou_sum, n = totals.tolist()
    return loss_sum / max(n, 1), iou_sum / max(n, 1)


def _check_resume_config(cfg: TrainConfig, saved: dict) -> TrainConfig:
    saved_cfg = config_from_dict(saved["config"])
    diff = {k: (v, getattr(cfg, k)) for k, v in saved_cfg.to_dict().items()
            if getattr(cfg, k) != v and k not in ("threads", "num_workers")}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"--resume continues the saved config; these settings differ: {listed}")
    return saved_cfg
