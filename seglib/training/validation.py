"""Training-time validation, which picks the best epoch: mean loss and mean per-image IoU at the training size; with
several trained sets, the mean over the sets of each set's mean IoU (each set weighted equally, the multi-domain
rule), so that a large set does not decide alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from seglib.metrics import batch_iou_torch
from seglib.settings import TrainConfig
from seglib.training.runtime import Runtime

SET_COLUMN = "val_iou_{name}"  # history.csv's column of one set's val mean IoU (runs on several sets)


@dataclass
class Validation:
    """One validation pass: mean loss, the IoU that picks the epoch, and each set's mean IoU (several sets only)."""

    loss: float
    iou: float
    per_set: dict[str, float] = field(default_factory=dict)

    def columns(self) -> dict[str, float]:
        """The per-set IoUs as history.csv columns."""
        return {SET_COLUMN.format(name=name): value for name, value in self.per_set.items()}


def set_of_each_photo(dataset) -> tuple[list[str], dict[str, int]]:
    """(the set names in order, photo id -> its set's index) of a dataset whose items name their set; one unnamed
    set for items that do not."""
    items = dataset.items
    if "dataset" not in items.columns:
        return [""], {str(i): 0 for i in items["id"]}
    names = list(dict.fromkeys(str(s) for s in items["dataset"]))
    return names, {str(i): names.index(str(s)) for i, s in zip(items["id"], items["dataset"], strict=True)}


@torch.inference_mode()
def validate(model, loader, loss_fn, cfg: TrainConfig, runtime: Runtime, use_amp: bool) -> Validation:
    """Mean loss and IoU over the val photos (model selection only; scoring is in evaluate): one set's mean
    per-image IoU, or with several sets the mean of their mean IoUs."""
    names, set_index = set_of_each_photo(loader.dataset)
    sums = torch.zeros(2 + 2 * len(names), dtype=torch.float64)  # loss, n, then each set's IoU sum and count
    was_training = model.training
    model.eval()
    for batch in loader:
        images = batch["image"].to(runtime.device)
        masks = batch["mask"].to(runtime.device)
        with torch.autocast(device_type=runtime.device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images).float()
        sums[0] += loss_fn(logits, masks).item() * images.shape[0]
        sums[1] += images.shape[0]
        ious = batch_iou_torch(logits, masks, threshold=cfg.threshold, from_logits=True).double().cpu()
        for photo_id, iou in zip(batch["id"], ious, strict=True):
            k = set_index[str(photo_id)]
            sums[2 + 2 * k] += iou
            sums[3 + 2 * k] += 1
    model.train(was_training)
    if runtime.distributed:
        totals = sums.to(runtime.device)
        dist.all_reduce(totals)
        sums = totals.cpu()
    means = {name: (sums[2 + 2 * k] / sums[3 + 2 * k]).item() for k, name in enumerate(names) if sums[3 + 2 * k] > 0}
    loss = (sums[0] / sums[1].clamp(min=1)).item()
    if len(names) == 1:
        return Validation(loss, (sums[2] / sums[1].clamp(min=1)).item())
    return Validation(loss, sum(means.values()) / max(len(means), 1), means)
