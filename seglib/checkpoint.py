"""Checkpoints: written atomically, loaded with the safe (weights-only) unpickler and checked against the one
schema of stored models (`seglib.schema`) before anything uses them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

import seglib
from seglib.geometry import NORMALIZATION
from seglib.infra.errors import CheckpointError, first_line
from seglib.infra.io import atomic_path
from seglib.models.model import model_for
from seglib.models.model_registry import model_entry
from seglib.runs import BEST, LAST
from seglib.schema import CHECKPOINT_FORMAT, refuse, validate_stored
from seglib.settings import TrainConfig, config_from_dict

FORMAT = CHECKPOINT_FORMAT


def weights_description(cfg: TrainConfig) -> str:
    """Which initial weights a run used (its registry entry's words for its `encoder_weights`), the teacher it
    was distilled toward and the L2-SP pull toward the start, for the run's record."""
    described = model_entry(cfg.model).starting_weights(cfg.encoder_weights).describe(cfg)
    if cfg.distill_weight and cfg.teacher_masks:
        described += (f"; distilled toward a teacher's cached probabilities in {cfg.teacher_masks} (distill_weight="
                      f"{cfg.distill_weight:g})")
    elif cfg.distill_weight:
        described += (f"; distilled toward MediaPipe's selfie segmenter's own predictions (distill_weight="
                      f"{cfg.distill_weight:g})")
    if cfg.l2sp_weight:
        described += f"; pulled toward its starting weights by L2-SP (l2sp_weight={cfg.l2sp_weight:g})"
    return described


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def cpu_state_dict(model: nn.Module) -> dict:
    """The model's weights and buffers as CPU tensors (what checkpoints store)."""
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def make_checkpoint(model: nn.Module, cfg: TrainConfig, *, epoch: int, val_iou: float, best_val_iou: float) -> dict:
    """Everything prediction needs (weights, threshold, input size, normalisation, config), with an empty resume
    state (`training.parts.TrainParts.checkpoint` fills it)."""
    return {
        "format": FORMAT,
        "seglib_version": seglib.__version__,
        "torch_version": str(torch.__version__),
        "model_state": cpu_state_dict(model),
        "model_spec": getattr(unwrap(model), "spec", None),  # the graph of a TFLiteNet (plain data), else None
        "config": cfg.to_saved_dict(),
        "weights": weights_description(cfg),
        "threshold": float(cfg.threshold),
        "input_size": int(cfg.input_size),
        "normalization": {k: list(v) for k, v in NORMALIZATION.items()},
        "epoch": int(epoch),
        "val_iou": float(val_iou),
        "best_val_iou": float(best_val_iou),
        "bad_epochs": 0, "stop_reason": "", "history": [],  # the resume state, empty
        **dict.fromkeys(("optimizer_state", "scheduler_state", "scaler_state")),
    }


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write to a temporary file beside `path`, then rename: a crash never leaves a half-written file, and a full
    disk is a one-line error naming `path` (written through a Python file, whose errors say what failed)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)
    return path


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
PICKLE_MAGIC = b"\x80"  # the legacy (pre-1.6) format starts with a pickle protocol byte


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with `weights_only=True`: a file holding pickled code is refused and nothing from it runs.

    A file that cannot be used is a CheckpointError saying what it is: missing, a folder, empty, not a
    checkpoint at all, truncated or corrupt, unsafe, a PyTorch file that seglib did not write, or a checkpoint
    whose fields fail the schema (`seglib.schema`: the field and the problem named, on one line).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (give {BEST} or {LAST} inside it)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint; a write was cut short?")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(ZIP_MAGIC) and not head.startswith(PICKLE_MAGIC):
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file; a text file or another format?)")
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (the archive is incomplete)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused as unsafe: it holds objects other than tensors and plain data, "
                              f"which the safe loader does not run ({first_line(exc, 120)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {first_line(exc, 120)})") \
            from None
    family = FORMAT.rpartition("/")[0] + "/"
    if not isinstance(state, dict) or not str(state.get("format")).startswith(family):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: a PyTorch file, but not a seglib checkpoint (format {found!r}); "
                              f"give a {BEST} or {LAST} written by `seglib train`")
    validate_checkpoint(state, str(path))  # fields, types, ranges, finite weights, format and seglib version
    return state


def model_from_checkpoint(state: dict) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model a checkpoint was trained with and load its weights (no downloads)."""
    cfg = config_from_dict(state["config"])
    if model_entry(cfg.model).saves_graph and not isinstance(state.get("model_spec"), dict):
        raise CheckpointError(f"checkpoint of model={cfg.model} holds no model_spec (its graph)")
    model = model_for(cfg, pretrained=False, spec=state.get("model_spec"))
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit its own config ({str(exc)[:160]})") from None
    model.eval()
    return model, cfg


def validate_checkpoint(state: dict, where: str) -> TrainConfig:
    """`validate_stored` for a loaded checkpoint, and its weights finite."""
    cfg = validate_stored(state, "checkpoint", where)
    check_finite_weights(state["model_state"], where)
    return cfg


def check_finite_weights(state: dict, where: str, field_name: str = "model_state") -> None:
    """Every floating-point tensor finite: NaN or inf weights give empty or meaningless masks."""
    import torch

    bad = [k for k, t in state.items() if (t.is_floating_point() or t.is_complex()) and not torch.isfinite(t).all()]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise refuse(where, f"field '{field_name}' holds non-finite weights (NaN or inf) in {bad[0]!r}{more}; "
                            "the training diverged? use an earlier checkpoint or train again")
