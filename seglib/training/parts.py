"""What a training run trains with: the network, its loss, optimiser, schedule, mixed-precision scaler, weight
average and teacher, built from the config in one place (`build_parts`), for the engine and the benchmark alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from seglib.checkpoint import cpu_state_dict, make_checkpoint
from seglib.infra.errors import CheckpointError
from seglib.infra.paths import display_path
from seglib.losses import DiceBCELoss, StartingPointPenalty, distillation_loss, soft_target_loss
from seglib.models.model import model_for, starting_state, teacher_for
from seglib.settings import CONSTANT, COSINE, ONECYCLE, TrainConfig
from seglib.training.ema import WeightEMA
from seglib.training.runtime import Runtime

# channels-last on CPU too: faster training steps for the MediaPipe networks (reports/bench/bench.md); results
# equal up to float rounding (a run is no longer bit-identical to one trained before the change)
MEMORY_FORMAT = torch.channels_last


@dataclass
class TrainParts:
    """Everything one training step touches, and how it is saved to and restored from a checkpoint."""

    model: nn.Module  # the network whose raw weights the optimiser moves
    trained: nn.Module  # what forward and backward run through: the model, or its DistributedDataParallel wrapper
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    ema: WeightEMA | None = None
    teacher: nn.Module | None = None
    penalty: StartingPointPenalty | None = None  # L2-SP toward the starting weights (l2sp_weight)

    @property
    def scored(self) -> nn.Module:
        """The weights validated and saved as the checkpoint's model: the average with EMA, else the model."""
        return self.ema.module if self.ema is not None else self.trained

    def checkpoint(self, cfg: TrainConfig, state, val_iou: float, data_split: dict) -> dict:
        """The checkpoint of the epoch `state` has just recorded (`state` is an engine.TrainState)."""
        saved = make_checkpoint(self.scored, cfg, epoch=state.epoch, val_iou=val_iou, best_val_iou=state.best_iou)
        saved.update(history=list(state.history), bad_epochs=int(state.bad_epochs), stop_reason=state.stop_reason,
                     optimizer_state=self.optimizer.state_dict(), scheduler_state=self.scheduler.state_dict(),
                     scaler_state=self.scaler.state_dict(), data_split=data_split)
        if self.ema is not None:  # model_state holds the averaged weights; the raw ones are kept beside them
            saved["raw_model_state"] = cpu_state_dict(self.model)
            saved["ema_state"] = self.ema.state_dict()
        return saved

    def step(self, images: torch.Tensor, masks: torch.Tensor, distill_weight: float = 0.0,
             teacher_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Forward, loss (plus `distill_weight` x the distillation term toward the frozen teacher, or toward
        `teacher_probs`, a teacher's cached probabilities of the batch; plus the L2-SP penalty), backward and one
        optimiser step on a batch (mixed precision with `use_amp`); a non-finite loss is returned before any step,
        for the caller to stop on. The benchmark times exactly this."""
        with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=self.use_amp):
            logits = self.trained(images)
            loss = self.loss_fn(logits.float(), masks)
            if teacher_probs is not None:
                loss = loss + distill_weight * soft_target_loss(logits, teacher_probs)
            elif self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(images)
                loss = loss + distill_weight * distillation_loss(logits, teacher_logits)
        if self.penalty is not None:  # in float32, outside autocast
            loss = loss + self.penalty(self.model)
        if not torch.isfinite(loss):
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def restore(self, saved: dict, path: Path) -> None:
        """Weights, optimiser, schedule and scaler as `saved` (read from `path`) left them."""
        try:
            if self.ema is not None:
                self.model.load_state_dict(saved["raw_model_state"])
                self.ema.load_state_dict(saved["ema_state"], saved["model_state"])
            else:
                self.model.load_state_dict(saved["model_state"])
            self.optimizer.load_state_dict(saved["optimizer_state"])
            self.scheduler.load_state_dict(saved["scheduler_state"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{display_path(path)}: cannot resume from it ({type(exc).__name__}: "
                                  f"{str(exc)[:120]}); start again with --overwrite") from None
        if saved.get("scaler_state"):
            self.scaler.load_state_dict(saved["scaler_state"])


def build_parts(cfg: TrainConfig, runtime: Runtime | None = None, steps_per_epoch: int = 1, *,
                pretrained: bool = True) -> TrainParts:
    """The parts for `cfg` on `runtime`'s device (the CPU without one), the schedule spread over `cfg.epochs` epochs
    of `steps_per_epoch` steps; seeded by `cfg.seed`. `pretrained=False` skips loading starting weights (timing)."""
    device = runtime.device if runtime is not None else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model = model_for(cfg, pretrained=pretrained).to(device).to(memory_format=MEMORY_FORMAT)
    penalty = starting_point_penalty(cfg, model) if cfg.l2sp_weight and pretrained else None
    optimizer = torch.optim.AdamW(parameter_groups(cfg, model, penalty), lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = device.type == "cuda" and cfg.amp
    trained = model
    if runtime is not None and runtime.distributed:
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[runtime.local_rank]
                                                      if device.type == "cuda" else None)
    # the frozen network, unless the teacher's probabilities are cached (teacher_masks: they come with the batch)
    frozen = cfg.distill_weight and not cfg.teacher_masks
    teacher = teacher_for(cfg).to(device, memory_format=MEMORY_FORMAT) if frozen else None
    return TrainParts(model=model, trained=trained, loss_fn=DiceBCELoss.for_config(cfg), optimizer=optimizer,
                      scheduler=make_scheduler(cfg, optimizer, steps_per_epoch),
                      scaler=torch.amp.GradScaler("cuda", enabled=use_amp), use_amp=use_amp,
                      ema=WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None, teacher=teacher,
                      penalty=penalty.to(device) if penalty is not None else None)


def starting_point_penalty(cfg: TrainConfig, model: nn.Module) -> StartingPointPenalty:
    """L2-SP over the model's parameters that have a starting value (`models.model.starting_state`)."""
    names = dict(model.named_parameters())
    start = {name: value for name, value in starting_state(cfg).items() if name in names}
    return StartingPointPenalty(start, cfg.l2sp_weight)


def parameter_groups(cfg: TrainConfig, model: nn.Module, penalty: StartingPointPenalty | None) -> list[dict]:
    """The optimiser's parameter groups: one, or with L2-SP (as in the paper) the parameters it pulls toward their
    start without weight decay, and weight decay on the new ones only."""
    if penalty is None:
        return [{"params": list(model.parameters())}]
    pulled = set(penalty.names)
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if n in pulled], "weight_decay": 0.0},
              {"params": [p for n, p in named if n not in pulled], "weight_decay": cfg.weight_decay}]
    return [group for group in groups if group["params"]]


# each schedule, built for an optimiser over a run's total steps
SCHEDULERS = {
    ONECYCLE: lambda cfg, optimizer, total: torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.15, div_factor=20.0, final_div_factor=200.0),
    COSINE: lambda cfg, optimizer, total: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=total, eta_min=cfg.lr * 0.01),
    CONSTANT: lambda cfg, optimizer, total: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
}


def make_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """The learning-rate schedule `cfg.schedule` names, stepped once per batch."""
    return SCHEDULERS[cfg.schedule](cfg, optimizer, max(1, cfg.epochs * steps_per_epoch))
