"""Training engine: one code path for CPU, one GPU and several GPUs (torchrun + DistributedDataParallel)."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from seglib import config as paths
from seglib.checkpoint import (
    cpu_state_dict,
    load_checkpoint,
    make_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    weights_description,
)
from seglib.data.dataset import SegmentationDataset
from seglib.ema import WeightEMA
from seglib.errors import ConfigError, SeglibError
from seglib.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from seglib.losses import DiceBCELoss
from seglib.metrics import batch_iou_torch
from seglib.model import build_model, count_parameters
from seglib.settings import TrainConfig, config_from_dict, config_yaml

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_iou", "lr", "epoch_seconds", "images_per_second",
                   "best"]


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


@dataclass
class Runtime:
    """Device and process-group facts for this process."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def run_dir_for(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"run name {name!r}: use a plain folder name (letters, digits, '-', '_')")
    return paths.runs_dir() / name


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device; join the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but CUDA is not available")
    if world_size > 1:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
        if want_cuda:
            torch.cuda.set_device(device)
        runtime = Runtime(device, rank, world_size, local_rank)
    else:
        runtime = Runtime(torch.device("cuda") if want_cuda else torch.device("cpu"))
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // runtime.world_size)
        torch.set_num_threads(threads)
        cv2.setNumThreads(1)  # OpenCV's own pool would fight torch's threads for the same cores
    return runtime


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, runtime: Runtime) -> None:
    """Refuse to touch an existing run unless asked to resume or to overwrite it."""
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if not (run_dir / "last.pt").is_file():
            raise SeglibError(f"{run_dir}: nothing to resume (no last.pt)")
        if runtime.main:  # half-written checkpoints of a killed run (atomic_path's temporary files)
            for stale in run_dir.glob(".*.pt.*.tmp"):
                stale.unlink(missing_ok=True)
        return
    if exists and not overwrite:
        raise SeglibError(f"{run_dir}: run folder already exists; use --resume to continue it, "
                          "--overwrite to replace it, or another --run name")
    if runtime.main:
        ensure_writable_dir(run_dir.parent)


def create_run_dir(run_dir: Path, *, overwrite: bool, runtime: Runtime) -> None:
    """Called once the data has loaded, so a failed start leaves no empty run folder behind."""
    if runtime.main:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        ensure_writable_dir(run_dir)


def make_loaders(cfg: TrainConfig, runtime: Runtime, dataset_dir=None, splits_dir=None):
    """Datasets (decoded once, cached in memory) and loaders for train and val."""
    from seglib.transforms import eval_transform, train_transform

    train_ds = SegmentationDataset.from_split(
        "train", dataset_dir, splits_dir, limit=cfg.limit_train or None,
        transform=train_transform(cfg.input_size, cfg.augment), max_side=cfg.cache_max_side, seed=cfg.seed)
    val_ds = SegmentationDataset.from_split(
        "val", dataset_dir, splits_dir, limit=cfg.limit_val or None,
        transform=eval_transform(cfg.input_size), max_side=cfg.cache_max_side)
    cuda = runtime.device.type == "cuda"
    workers = cfg.num_workers if cfg.num_workers >= 0 else (min(8, os.cpu_count() or 1) if cuda else 0)
    # decode once in the main process: forked workers share the cache instead of decoding every epoch
    train_ds.preload()
    val_ds.preload()
    if runtime.distributed:
        train_sampler = DistributedSampler(train_ds, runtime.world_size, runtime.rank, shuffle=True, seed=cfg.seed)
        val_sampler = DistributedSampler(val_ds, runtime.world_size, runtime.rank, shuffle=False)
    else:
        train_sampler = RandomSampler(train_ds, generator=torch.Generator())
        val_sampler = SequentialSampler(val_ds)
    # persistent workers: starting them every epoch cost more than the epoch itself on a GPU (1.5 s for 202
    # images on an H200); they read the epoch from shared memory, so augmentation stays (seed, epoch, index)
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=train_sampler,
                              drop_last=len(train_ds) > cfg.batch_size, num_workers=workers, pin_memory=cuda,
                              persistent_workers=workers > 0)
    # validation reads the preloaded cache and only letterboxes: worker start-up would cost more than it saves
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, sampler=val_sampler, num_workers=0, pin_memory=cuda)
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
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(cfg.seed * 1000 + epoch)


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          dataset_dir=None, splits_dir=None, progress: bool = True, stop_after_epoch: int | None = None,
          log=print) -> TrainResult:
    """Train a U-Net; checkpoints, history and config go to `run_dir`.

    `stop_after_epoch` simulates an interruption (tests); Ctrl-C stops after the last saved epoch.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    # 1. runtime and run folder
    if resume and (run_dir / "last.pt").is_file():
        saved = load_checkpoint(run_dir / "last.pt")
        cfg = config_from_dict(saved["config"]) if cfg is None else _check_resume_config(cfg, saved)
    else:
        saved = None
    runtime = setup_runtime(cfg)
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, runtime=runtime)
    # 2. data
    train_loader, val_loader = make_loaders(cfg, runtime, dataset_dir, splits_dir)
    if saved is None:
        create_run_dir(run_dir, overwrite=overwrite, runtime=runtime)
    if runtime.distributed:
        dist.barrier()
    # 3. model, loss, optimiser, schedule, mixed precision
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, base_channels=cfg.base_channels, depth=cfg.depth, encoder=cfg.encoder,
                        encoder_weights=cfg.encoder_weights).to(runtime.device)
    cuda = runtime.device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = DiceBCELoss(cfg.dice_weight, cfg.bce_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer, len(train_loader))
    use_amp = cuda and cfg.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None
    history: list[dict] = []
    start_epoch, best_iou, best_epoch, bad_epochs = 1, -1.0, 0, 0
    if saved is not None:
        if ema is not None:  # model_state holds the averaged weights; the raw ones are kept beside them
            model.load_state_dict(saved["raw_model_state"])
            ema.load_state_dict(saved["ema_state"], saved["model_state"])
        else:
            model.load_state_dict(saved["model_state"])
        optimizer.load_state_dict(saved["optimizer_state"])
        scheduler.load_state_dict(saved["scheduler_state"])
        if saved.get("scaler_state"):
            scaler.load_state_dict(saved["scaler_state"])
        history = list(saved["history"])
        start_epoch = saved["epoch"] + 1
        best_iou = saved["best_val_iou"]
        bad_epochs = saved["bad_epochs"]
        best_epoch = max((h["epoch"] for h in history if h.get("best")), default=0)
        if saved.get("stop_reason") in ("early-stopping", "time-budget", "completed"):
            start_epoch = cfg.epochs + 1
    ddp_model = model
    if runtime.distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.local_rank] if cuda else None)
    scored_model = ema.module if ema is not None else ddp_model  # what is validated and saved as model_state
    if runtime.main and saved is None:
        write_text_atomic(run_dir / "config.yaml", config_yaml(cfg))
        log(f"run {run_dir.name}: profile {cfg.profile}, {cfg.model} ({count_parameters(model):,} parameters), "
            f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val images at {cfg.input_size}px, "
            f"device {runtime.device}{f' x{runtime.world_size}' if runtime.distributed else ''}, "
            f"weights: {weights_description(cfg)}")
    elif runtime.main:
        log(f"run {run_dir.name}: resuming after epoch {start_epoch - 1} of {cfg.epochs}")

    # 4. the loop
    stop_reason = saved.get("stop_reason", "") if saved else ""
    train_seconds = sum(h["epoch_seconds"] for h in history)
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            set_epoch(train_loader, cfg, epoch)
            ddp_model.train()
            total_loss, seen = 0.0, 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                       disable=not (progress and runtime.main))
            for batch in bar:
                images = batch["image"].to(runtime.device, non_blocking=True)
                masks = batch["mask"].to(runtime.device, non_blocking=True)
                if cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=runtime.device.type, dtype=torch.float16, enabled=use_amp):
                    logits = ddp_model(images)
                    loss = loss_fn(logits.float(), masks)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"{run_dir}: loss became {loss.item()} at epoch {epoch}; training stopped "
                        f"(lower lr, currently {cfg.lr}); last good checkpoint kept in last.pt")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                total_loss += loss.item() * images.shape[0]
                seen += images.shape[0]
                bar.set_postfix(loss=f"{loss.item():.3f}")
            train_loss = _reduce_mean(total_loss, seen, runtime)
            val_loss, val_iou = validate(scored_model, val_loader, loss_fn, cfg, runtime, use_amp)
            seconds = time.perf_counter() - t0
            train_seconds += seconds
            improved = val_iou > best_iou
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
                if ema is not None:
                    state["raw_model_state"] = cpu_state_dict(model)
                    state["ema_state"] = ema.state_dict()
                if improved:
                    save_checkpoint(state, run_dir / "best.pt")
                save_checkpoint(state, run_dir / "last.pt")
                write_history(run_dir, history)
                if progress:
                    log(f"epoch {epoch:3d}/{cfg.epochs}  loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                        f"val IoU {val_iou:.4f}{' *' if improved else ''}  {row['images_per_second']:.1f} img/s")
            if stop_reason:
                break
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        if runtime.main:
            done = history[-1]["epoch"] if history else 0
            log(f"interrupted: epochs 1-{done} are saved in {run_dir / 'last.pt'}; "
                f"continue with `seglib train --run {run_dir.name} --resume`")
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.barrier()
    result = TrainResult(run_dir, best_iou, best_epoch, len(history), train_seconds,
                         _mean_images_per_second(history), stop_reason or "completed", history)
    if runtime.main and stop_reason != "interrupted":
        write_json_atomic(run_dir / "train_summary.json", {
            "best_val_iou": best_iou, "best_epoch": best_epoch, "epochs_run": len(history),
            "train_seconds": train_seconds, "images_per_second": result.images_per_second,
            "stop_reason": result.stop_reason, "device": str(runtime.device), "world_size": runtime.world_size,
            "weights": weights_description(cfg), "parameters": count_parameters(model), "profile": cfg.profile,
        })
    return result


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


def _reduce_mean(total: float, count: int, runtime: Runtime) -> float:
    if runtime.distributed:
        t = torch.tensor([total, float(count)], dtype=torch.float64, device=runtime.device)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / max(count, 1)


def _mean_images_per_second(history: list[dict]) -> float:
    if not history:
        return 0.0
    return sum(h["images_per_second"] for h in history) / len(history)


def _check_resume_config(cfg: TrainConfig, saved: dict) -> TrainConfig:
    saved_cfg = config_from_dict(saved["config"])
    diff = {k: (v, getattr(cfg, k)) for k, v in saved_cfg.to_dict().items()
            if getattr(cfg, k) != v and k not in ("threads", "num_workers")}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r} vs given {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"--resume continues the saved config; these settings differ: {listed}")
    return saved_cfg


def write_history(run_dir: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})
    write_text_atomic(run_dir / "history.csv", buf.getvalue())


def load_run(run: str | Path, which: str = "best"):
    """(model, config, checkpoint dict) of a run folder's best or last checkpoint."""
    run_dir = Path(run) if Path(run).is_dir() else run_dir_for(str(run))
    state = load_checkpoint(run_dir / f"{which}.pt")
    model, cfg = model_from_checkpoint(state)
    return model, cfg, state
