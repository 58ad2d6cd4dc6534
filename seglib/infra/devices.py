"""Which device runs a model: the allowed names and the one rule for "auto" (CUDA when present, else the CPU)."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING

from seglib.infra.errors import SeglibError

if TYPE_CHECKING:
    import torch

DEVICES = AUTO_DEVICE, CPU, CUDA = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = AUTO_DEVICE, option: str = "--device ") -> torch.device:
    """"auto" -> cuda when available, else cpu; asking for cuda without CUDA is a SeglibError."""
    import torch  # here, not at the top: the CLI's --help and the settings need no torch

    if isinstance(device, torch.device):
        return device
    if device == AUTO_DEVICE:
        return torch.device(CUDA if torch.cuda.is_available() else CPU)
    if str(device).startswith(CUDA) and not torch.cuda.is_available():
        raise SeglibError(f"device {device!r} requested but CUDA is not available (use {option}cpu or {option}auto)")
    try:
        return torch.device(device)
    except RuntimeError:
        raise SeglibError(f"device {device!r} unknown; expected one of {', '.join(DEVICES)}") from None


def device_name(device: torch.device) -> str:
    """The device in words for a run's record: 'cpu', or 'cuda (NVIDIA H100 80GB HBM3)'."""
    import torch

    if device.type == CUDA:
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)


def describe_machine() -> dict:
    """The CPU count, platform and processor a benchmark ran on."""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
