"""The training part of the bench: our `cpu` profile against the course configuration, each in its own process."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seglib.infra.devices import describe_machine
from seglib.infra.errors import SeglibError
from seglib.models.model_registry import SMP_UNET
from seglib.predict import Predictor

logger = logging.getLogger(__name__)
WARMUP_STEPS = 2  # untimed training steps first: they warm up allocators and kernels

# The public course solution: smp U-Net, timm-efficientnet-b0 encoder, 320 px, batch 16, Adam 3e-3, Dice + BCE,
# its photos decoded from disk every time. Here its encoder starts from scratch (no ImageNet download), which does
# not change its speed.
CONFIGS = {
    "ours (cpu profile)": {"profile": "cpu", "overrides": {}, "decode_every_time": False},
    "course solution": {"profile": "cpu", "overrides": {"model": SMP_UNET, "encoder": "timm-efficientnet-b0",
                                                        "encoder_weights": "none", "input_size": 320,
                                                        "batch_size": 16},
                        "decode_every_time": True},
}


def measure(profile: str, overrides: dict, train_steps: int, predict_runs: int, dataset_dir=None, *,
            splits_dir=None, decode_every_time: bool = False) -> dict:
    """Time the data pipeline, training steps and end-to-end prediction for one configuration, its parts built
    by the engine's `build_parts` and its photos read by the engine's loaders (`decode_every_time`: from disk
    at every read, as the course code does, instead of decoded once into memory)."""
    from seglib.models.model_registry import model_entry
    from seglib.profiles import make_config
    from seglib.training.parts import build_parts
    from seglib.training.runtime import setup_runtime

    # 1. the configuration and its parts, as the engine builds them (no starting weights to load: timing only)
    cfg = make_config(profile, overrides)
    runtime = setup_runtime(cfg)
    parts = build_parts(cfg, runtime, train_steps + WARMUP_STEPS, pretrained=False)
    # 2. the data pipeline: photos read, augmented and letterboxed
    loader = _train_loader(cfg, runtime, dataset_dir, splits_dir, decode_every_time)
    pipeline_ips = _pipeline_speed(loader.dataset)
    # 3. training steps: data loading + forward + backward + optimiser step, batch as configured
    train_ips = _training_speed(parts, loader, cfg, runtime, train_steps)
    # 4. prediction end to end on a 640x480 JPEG: decode -> letterbox -> model -> mask at the photo's size
    predict_ms = _prediction_ms(parts, cfg, loader.dataset, predict_runs)
    return {
        "model": model_entry(cfg.model).describe(cfg),
        "parameters": int(sum(p.numel() for p in parts.model.parameters())),
        "input_size": cfg.input_size,
        "batch_size": cfg.batch_size,
        "train_images_per_second": train_ips,
        "pipeline_images_per_second": pipeline_ips,
        "pipeline_cached": not decode_every_time,
        "predict_ms_per_640x480_photo": predict_ms,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def _train_loader(cfg, runtime, dataset_dir, splits_dir, decode_every_time: bool):
    """The engine's train loader, or the same photos and augmentation decoded at every read."""
    from functools import partial

    from seglib.data.batching import pad_collate
    from seglib.data.dataset import SegmentationDataset
    from seglib.geometry import pad_value
    from seglib.settings import input_multiple
    from seglib.training.loaders import make_loaders
    from seglib.transforms.pipelines import train_transform

    if not decode_every_time:
        return make_loaders(cfg, runtime, dataset_dir, splits_dir)[0]
    transform = train_transform(cfg.input_size, cfg.augment, geometry=cfg.geometry, multiple=input_multiple(cfg),
                                composite=cfg.composite)
    ds = SegmentationDataset.from_split("train", dataset_dir, splits_dir, transform=transform, cache=False,
                                        seed=cfg.seed)
    return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                       collate_fn=partial(pad_collate, image_fill=pad_value()))


def _pipeline_speed(ds, n_items: int = 120) -> float:
    """Images per second through the dataset alone (read, augment, letterbox)."""
    n_items = min(len(ds), n_items)
    t0 = time.perf_counter()
    for i in range(n_items):
        ds[i]
    return n_items / (time.perf_counter() - t0)


def _training_speed(parts, loader, cfg, runtime, train_steps: int) -> float:
    """Training images per second over `train_steps` steps of the engine's `TrainParts.step`, after the warm-up."""
    from seglib.training.parts import MEMORY_FORMAT

    batches = iter(loader)
    parts.trained.train()
    timed, images = 0.0, 0
    for step in range(train_steps + WARMUP_STEPS):
        t = time.perf_counter()
        batch = next(batches)
        parts.step(batch["image"].to(runtime.device).contiguous(memory_format=MEMORY_FORMAT),
                   batch["mask"].to(runtime.device), cfg.distill_weight)
        if step >= WARMUP_STEPS:
            timed += time.perf_counter() - t
            images += batch["image"].shape[0]
    return images / timed


def _prediction_ms(parts, cfg, ds, predict_runs: int) -> float:
    """Median ms of `Predictor.predict_mask` on a 640x480 JPEG decoded each time, the trained weights saved and
    loaded as a user's checkpoint would be."""
    from PIL import Image

    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.infra.io import load_rgb

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        save_checkpoint(make_checkpoint(parts.scored, cfg, epoch=0, val_iou=0.0, best_val_iou=0.0), ckpt)
        predictor = Predictor.from_checkpoint(ckpt)
        photo = Path(tmp) / "photo.jpg"
        Image.fromarray(load_rgb(ds.items.iloc[0]["image_path"])).resize((640, 480)).save(photo, quality=92)
        times = []
        for run in range(predict_runs + WARMUP_STEPS):
            t = time.perf_counter()
            mask = predictor.predict_mask(load_rgb(photo))
            if run >= WARMUP_STEPS:
                times.append(time.perf_counter() - t)
        if mask.shape != (480, 640):
            raise SeglibError(f"prediction gave a {mask.shape} mask for a 640x480 photo")
    return 1000 * float(np.median(times))


def measure_training(train_steps: int, predict_runs: int) -> dict:
    """The training part: every configuration of CONFIGS measured in its own process, and ours over theirs."""
    results = {}
    for name, spec in CONFIGS.items():
        logger.info(f"measuring {name} ...")
        cmd = [sys.executable, "-m", "seglib", "bench", "--one", json.dumps(spec), "--train-steps", str(train_steps),
               "--predict-runs", str(predict_runs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise SeglibError(f"benchmark of {name} failed: {last}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, theirs = results["ours (cpu profile)"], results["course solution"]
    ratios = {
        "train_images_per_second": ours["train_images_per_second"] / theirs["train_images_per_second"],
        "predict_speedup": theirs["predict_ms_per_640x480_photo"] / ours["predict_ms_per_640x480_photo"],
        "pipeline_over_training_ours": ours["pipeline_images_per_second"] / ours["train_images_per_second"],
    }
    return {"machine": describe_machine(), "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "train_steps": train_steps,
            "predict_runs": predict_runs, "results": results, "ratios_ours_over_theirs": ratios}


