"""Local weights files for machines without a network: read with the safe loader, and checked to fit the part of a
model they start (smp's encoder, torchvision's backbone) tensor by tensor before anything is loaded."""

from __future__ import annotations

import os

import torch
from torch import nn

from seglib.infra.errors import ConfigError


def read_state_dict(path: str, what: str) -> dict[str, torch.Tensor]:
    """The file's tensors (a plain state dict or {"state_dict": ...}, safe loader); a ConfigError naming the file
    when it is missing, not loadable or not a dict of tensors. `what`: the part it starts, e.g. "encoder"."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: {what} weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        article = "an" if what[:1] in "aeiou" else "a"
        raise ConfigError(f"{path}: not {article} {what} state dict (expected a dict of tensors, or "
                          f"{{'state_dict': dict of tensors}}; found {_describe(state)})")
    return state


def check_fit(module: nn.Module, kept: dict[str, torch.Tensor], path: str, what: str) -> None:
    """`kept` (the file's tensors as the module would receive them) fits `module` exactly: a missing, unexpected or
    mis-shaped tensor is a ConfigError naming it."""
    own = module.state_dict()
    # torch fills in a BatchNorm's num_batches_tracked when the file lacks it (torchvision's ImageNet files do)
    missing = [k for k in own if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in own]
    wrong_shape = [f"{k}: file {_shape(kept[k])} vs model {_shape(own[k])}"
                   for k in own if k in kept and kept[k].shape != own[k].shape]
    problems = [f"{label} {len(names)} ({_first_few(names)})"
                for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
                if names]
    if problems:
        raise ConfigError(f"{path}: {what} weights do not fit the {type(module).__name__}: {', '.join(problems)}")


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ",".join(str(n) for n in tensor.shape) + "]"


def _first_few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        return f"a dict with {len(keys)} keys ({_first_few(keys)})" if keys else "an empty dict"
    return f"a {type(obj).__name__}"
