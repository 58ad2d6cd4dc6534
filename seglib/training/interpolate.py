"""Checkpoints made in weight space, with no training.

WiSE-FT (Wortsman et al., CVPR 2022, `interpolate_checkpoint`): a fine-tuned checkpoint's weights interpolated toward
the weights its run started from, (1 - alpha) x start + alpha x fine-tuned. The start is made again from the run's
config (`models.model.starting_state`: e.g. MediaPipe's bundled selfie weights); a tensor that had no starting value
(a new decoder or head) keeps its fine-tuned value.

A uniform model soup (Wortsman et al., ICML 2022, `average_checkpoints`): the mean of the weights of several runs of
one network fine-tuned from the same start on the same photos.

Either result is a checkpoint like its (first) source -- the same settings, threshold, input size and record of
training photos, so it predicts with the source's protocol -- that records how it was made in its `interpolation`
field, and is no resume point."""

from __future__ import annotations

from pathlib import Path

import torch

from seglib.checkpoint import load_checkpoint, save_checkpoint, validate_checkpoint
from seglib.infra.errors import CheckpointError, ConfigError, SeglibError
from seglib.infra.paths import display_path
from seglib.models.model import starting_state
from seglib.settings import config_from_dict

# what only a resume reads: an interpolation is not a point to continue training from
RESUME_ONLY = ("optimizer_state", "scheduler_state", "scaler_state")
FROM_TRAINING = ("raw_model_state", "ema_state", "val_iou", "best_val_iou")  # they describe the source's weights


def interpolate_state(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                      alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) x start + alpha x tuned for every floating-point tensor of `tuned` that `start` holds (exact at
    alpha 0 and 1); the others as in `tuned`."""
    out = {}
    for name, value in tuned.items():
        begin = start.get(name)
        if begin is None or not value.is_floating_point():
            out[name] = value.clone()
            continue
        if begin.shape != value.shape:
            raise CheckpointError(f"weights {name!r}: starting shape {tuple(begin.shape)} differs from the fine-tuned "
                                  f"{tuple(value.shape)}")
        mixed = (1.0 - alpha) * begin.double() + alpha * value.double()
        out[name] = mixed.to(value.dtype)
    return out


def interpolate_checkpoint(checkpoint_path: str | Path, alpha: float, out_path: str | Path, *,
                           overwrite: bool = False) -> Path:
    """Write to `out_path` a checkpoint whose weights are (1 - alpha) x the run's starting weights + alpha x those
    of `checkpoint_path` (alpha 1: the fine-tuned weights, 0: the start), recording alpha and the source in its
    `interpolation` field and its `weights` text. One-line errors: alpha outside 0-1, an existing `out_path`
    (unless `overwrite`) or the source itself, a run from scratch (no start), an interpolation as the source."""
    source, out = Path(checkpoint_path), Path(out_path)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha:g}: expected a number from 0 (the starting weights) to 1 (the fine-tuned)")
    _refuse_out(out, [source], overwrite)
    state = load_checkpoint(source)
    if state.get("interpolation"):
        raise CheckpointError(f"{display_path(source)}: already made in weight space "
                              f"({_made_by(state['interpolation'])}); interpolate its source instead")
    cfg = config_from_dict(state["config"], source=f"{display_path(source)}: field 'config'")
    start = starting_state(cfg)
    if not start:
        raise CheckpointError(f"{display_path(source)}: trained from encoder_weights={cfg.encoder_weights}; no "
                              "starting weights to interpolate toward")
    missing = sorted(set(start) - set(state["model_state"]))
    if missing:
        raise CheckpointError(f"{display_path(source)}: its weights lack {missing[0]!r} of its starting weights "
                              f"({len(missing)} tensor(s)); not the model its config builds")
    written = {k: v for k, v in state.items() if k not in FROM_TRAINING}
    written.update(dict.fromkeys(RESUME_ONLY), model_state=interpolate_state(start, state["model_state"], alpha))
    mixed = sum(1 for name, value in state["model_state"].items() if name in start and value.is_floating_point())
    written["interpolation"] = {
        "method": "WiSE-FT", "alpha": float(alpha), "source": str(display_path(source)),
        "source_epoch": state.get("epoch"), "source_val_iou": state.get("val_iou"),
        "interpolated_tensors": mixed, "kept_tensors": len(state["model_state"]) - mixed}
    written["weights"] = (f"{state.get('weights', '')}; interpolated (WiSE-FT) {1 - alpha:g} x starting weights + "
                          f"{alpha:g} x fine-tuned weights of {display_path(source)}")
    validate_checkpoint(written, str(out))
    save_checkpoint(written, out)
    return out


def average_checkpoints(checkpoint_paths: list[str | Path], out_path: str | Path, *, overwrite: bool = False) -> Path:
    """Write to `out_path` a uniform model soup: the mean of the weights of the checkpoints (floating-point tensors;
    the others as in the first), each a run of the same network fine-tuned from the same start on the same
    training photos (its record of training photos stays true), with the first's settings and threshold. It records
    the sources in its `interpolation` field. One-line errors: fewer than two sources, a source listed twice, an
    existing `out_path` (unless `overwrite`) or a source as `out_path`, an interpolation or soup as a source, another
    network, start or set of training photos."""
    sources, out = [Path(p) for p in checkpoint_paths], Path(out_path)
    if len(sources) < 2:
        raise ConfigError("a soup needs at least two checkpoints")
    if len({p.resolve() for p in sources}) < len(sources):
        raise ConfigError("a checkpoint is listed twice; a soup weighs each run once")
    _refuse_out(out, sources, overwrite)
    states = [load_checkpoint(p) for p in sources]
    first, where = states[0], display_path(sources[0])
    cfg = config_from_dict(first["config"], source=f"{where}: field 'config'")
    for path, state in zip(sources, states, strict=True):
        if state.get("interpolation"):
            raise CheckpointError(f"{display_path(path)}: already made in weight space "
                                  f"({_made_by(state['interpolation'])}); use the runs it was made from")
        other = config_from_dict(state["config"], source=f"{display_path(path)}: field 'config'")
        for what, mine, theirs in (("network", state.get("model_spec"), first.get("model_spec")),
                                   ("starting weights", other.encoder_weights, cfg.encoder_weights),
                                   ("training photos", _train_ids(state), _train_ids(first)),
                                   ("weight names", sorted(state["model_state"]), sorted(first["model_state"]))):
            if mine != theirs:
                raise CheckpointError(f"{display_path(path)}: not the same {what} as {where}; a soup averages runs of "
                                      "one network from one start on the same photos")
    written = {k: v for k, v in first.items() if k not in FROM_TRAINING}
    written.update(dict.fromkeys(RESUME_ONLY), model_state={
        name: (torch.stack([s["model_state"][name].double() for s in states]).mean(0).to(value.dtype)
               if value.is_floating_point() else value.clone())
        for name, value in first["model_state"].items()})
    names = [str(display_path(p)) for p in sources]
    written["interpolation"] = {"method": "uniform soup", "sources": names,
                                "source_epochs": [s.get("epoch") for s in states],
                                "source_val_ious": [s.get("val_iou") for s in states]}
    written["weights"] = f"{first.get('weights', '')}; uniform soup (mean weights) of {', '.join(names)}"
    validate_checkpoint(written, str(out))
    save_checkpoint(written, out)
    return out


def _made_by(record: dict) -> str:
    """'WiSE-FT, alpha 0.5' or 'uniform soup of 3 checkpoints', from a checkpoint's `interpolation` record."""
    if "alpha" in record:
        return f"{record.get('method', 'WiSE-FT')}, alpha {record['alpha']:g}"
    return f"{record.get('method', 'uniform soup')} of {len(record.get('sources', []))} checkpoints"


def _train_ids(state: dict) -> list | None:
    return (state.get("data_split") or {}).get("train_ids")


def _refuse_out(out: Path, sources: list[Path], overwrite: bool) -> None:
    """One-line errors for an output that is a folder, one of the sources, or (unless `overwrite`) an existing file."""
    if out.is_dir():
        raise SeglibError(f"{out}: is a folder; give the checkpoint file to write")
    if out.exists() and any(out.resolve() == p.resolve() for p in sources):
        raise SeglibError(f"{out}: is a source checkpoint; write the result to another file")
    if out.exists() and not overwrite:
        raise SeglibError(f"{out}: already exists; refusing to overwrite it (pass --overwrite to replace it)")
