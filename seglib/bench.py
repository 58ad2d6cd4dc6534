"""`make bench`: training, data-pipeline and prediction speed of our `cpu` profile vs the course configuration.

Each configuration is measured in its own subprocess (so its peak memory is its own), on the same machine in
the same run. Results go to reports/bench/bench.json and bench.md. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seglib import config
from seglib.errors import SeglibError
from seglib.io import write_json_atomic, write_text_atomic

# The public course solution: smp U-Net, timm-efficientnet-b0 encoder, 320 px, batch 16, Adam 3e-3, Dice + BCE.
# Here its encoder starts from scratch (no ImageNet download), which does not change its speed.
CONFIGS = {
    "ours (cpu profile)": {"profile": "cpu", "overrides": {}},
    "course solution": {"profile": "cpu", "overrides": {"model": "smp-unet", "encoder": "timm-efficientnet-b0",
                                                        "encoder_weights": "none", "input_size": 320,
                                                        "batch_size": 16, "cache_max_side": 0}},
}


def measure(profile: str, overrides: dict, train_steps: int, predict_runs: int, dataset_dir=None) -> dict:
    """Time training steps, the data pipeline and end-to-end prediction for one configuration."""
    import torch

    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.data.dataset import SegmentationDataset
    from seglib.engine import train_step
    from seglib.io import load_rgb
    from seglib.losses import DiceBCELoss
    from seglib.model import architecture, model_for
    from seglib.predict import Predictor
    from seglib.runtime import setup_runtime
    from seglib.settings import make_config
    from seglib.transforms import train_transform

    no_cache = overrides.get("cache_max_side") == 0
    overrides = {k: v for k, v in overrides.items() if k != "cache_max_side"}
    cfg = make_config(profile, overrides)
    setup_runtime(cfg)
    torch.manual_seed(0)
    # data pipeline: decoded pairs cached in memory (ours) or decoded from disk every time (the course code)
    ds = SegmentationDataset.from_split("train", dataset_dir, transform=train_transform(cfg.input_size, cfg.augment),
                                        max_side=None if no_cache else cfg.cache_max_side, cache=not no_cache)
    if not no_cache:
        ds.preload()
    n_items = min(len(ds), 120)
    t0 = time.perf_counter()
    for i in range(n_items):
        ds[i]
    pipeline_ips = n_items / (time.perf_counter() - t0)
    # training: data loading + forward + backward + step, batch as configured
    model = model_for(cfg, pretrained=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loss_fn = DiceBCELoss(cfg.dice_weight, cfg.bce_weight)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    batches = iter(loader)
    model.train()
    timed, images = 0.0, 0
    for step in range(train_steps + 2):
        t = time.perf_counter()
        batch = next(batches)
        train_step(model, batch["image"], batch["mask"], loss_fn, optimizer, scaler)
        if step >= 2:  # the first two steps warm up allocators and kernels
            timed += time.perf_counter() - t
            images += batch["image"].shape[0]
    train_ips = images / timed
    # prediction end to end on a 640x480 JPEG: decode -> letterbox -> model -> mask at the photo's size
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        save_checkpoint(make_checkpoint(model, cfg, epoch=0, val_iou=0.0, best_val_iou=0.0), ckpt)
        predictor = Predictor.from_checkpoint(ckpt)
        photo = Path(tmp) / "photo.jpg"
        from PIL import Image

        image, _ = ds.load(0) if not no_cache else (load_rgb(ds.items.iloc[0]["image_path"]), None)
        Image.fromarray(image).resize((640, 480)).save(photo, quality=92)
        times = []
        for run in range(predict_runs + 2):
            t = time.perf_counter()
            mask = predictor.predict_mask(load_rgb(photo))
            if run >= 2:
                times.append(time.perf_counter() - t)
        assert mask.shape == (480, 640)
    return {
        "model": architecture(cfg.model, cfg.base_channels, cfg.depth, cfg.encoder),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "input_size": cfg.input_size,
        "batch_size": cfg.batch_size,
        "train_images_per_second": train_ips,
        "pipeline_images_per_second": pipeline_ips,
        "pipeline_cached": not no_cache,
        "predict_ms_per_640x480_photo": 1000 * float(np.median(times)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def run_all(train_steps: int = 8, predict_runs: int = 20, out_dir: Path | None = None, log=lambda _: None) -> dict:
    """Measure every configuration (each in its own process) and write reports/bench/bench.json and bench.md."""
    out_dir = Path(out_dir) if out_dir else config.reports_dir() / "bench"
    results = {}
    for name, spec in CONFIGS.items():
        log(f"measuring {name} ...")
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
    report = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine()},
              "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "train_steps": train_steps,
              "predict_runs": predict_runs, "results": results, "ratios_ours_over_theirs": ratios}
    write_json_atomic(out_dir / "bench.json", report)
    write_text_atomic(out_dir / "bench.md", markdown_table(report))
    return report


def target_checks(ratios: dict, ours: dict) -> list[tuple[str, str, str, bool]]:
    """The speed targets of the benchmark (issue 7): (what, measured, goal, met)."""
    return [
        ("data pipeline vs our training", f"{ratios['pipeline_over_training_ours']:.1f}x", ">= 3x",
         ratios["pipeline_over_training_ours"] >= 3),
        ("our training vs the course configuration", f"{ratios['train_images_per_second']:.2f}x", ">= 1.5x",
         ratios["train_images_per_second"] >= 1.5),
        ("predict per 640x480 photo", f"{ours['predict_ms_per_640x480_photo']:.1f} ms", "<= 50 ms",
         ours["predict_ms_per_640x480_photo"] <= 50),
    ]


def markdown_table(report: dict) -> str:
    rows = [("training images/s", "train_images_per_second", "{:.1f}"),
            ("data pipeline images/s", "pipeline_images_per_second", "{:.0f}"),
            ("predict ms / 640x480 photo", "predict_ms_per_640x480_photo", "{:.1f}"),
            ("peak memory (MiB)", "peak_rss_mib", "{:.0f}"),
            ("parameters", "parameters", "{:,}"), ("input size", "input_size", "{}")]
    names = list(report["results"])
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(report["results"][n][key]) for n in names) + " |")
    r = report["ratios_ours_over_theirs"]
    ours = report["results"][names[0]]
    lines += ["", f"Training speed ours/theirs: {r['train_images_per_second']:.2f}x; prediction "
              f"{r['predict_speedup']:.2f}x faster; our data pipeline runs at "
              f"{r['pipeline_over_training_ours']:.0f}x our training speed.", "",
              "| target | measured | met |", "|---|---|---|"]
    for label, value, goal, ok in target_checks(r, ours):
        lines.append(f"| {label} | {value} | {'yes' if ok else 'no'} ({goal}) |")
    lines += ["",
              f"Machine: {report['machine']['cpu_count']} CPU cores, {report['machine']['platform']}; "
              f"{report['generated']}."]
    return "\n".join(lines) + "\n"
