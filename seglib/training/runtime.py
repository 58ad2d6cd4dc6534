"""Where training runs: the device, the number of CPU threads, and the process group under torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import torch
import torch.distributed as dist

from seglib.infra.devices import resolve_device
from seglib.infra.errors import ConfigError, SeglibError
from seglib.settings import TrainConfig


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


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device; join the process group when launched by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        want_cuda = resolve_device(cfg.device, option="--set device=").type == "cuda"  # a setting here
    except SeglibError as exc:
        raise ConfigError(f"setting device={cfg.device}: {exc}") from None
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


def reduce_mean(total: float, count: int, runtime: Runtime) -> float:
    """total / count, summed over all processes when distributed."""
    if runtime.distributed:
        t = torch.tensor([total, float(count)], dtype=torch.float64, device=runtime.device)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / max(count, 1)


