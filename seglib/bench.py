"""`make bench`: how fast we train and predict, and the shipped model side by side with MediaPipe.

Two parts, each optional (`seglib bench --only`), written together to reports/bench/bench.json and bench.md
(a part not measured this time keeps its numbers from the previous bench.json):

- training: training, data-pipeline and prediction speed of our `cpu` profile vs the course configuration,
  each configuration in its own subprocess (so its peak memory is its own);
- prediction: one checkpoint (default the committed reference) on the test photos at the size they are scored
  at, end to end per photo (decode excluded; letterbox, model, TTA, probabilities back at the photo's size and
  the mask included) in PyTorch and, exported, in ONNX Runtime, next to MediaPipe off the shelf run by its own
  runtime in its own environment (`seglib.anchors`); ms per photo (median, p90), mean IoU scored by
  `seglib.evaluate`, FLOPs per photo, and the ONNX-vs-PyTorch parity of the mean IoU.

A benchmark, not a test: nothing asserts.
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
import onnxruntime
import torch
from torch.utils.flop_counter import FlopCounterMode

from seglib import config
from seglib.anchors import MEDIAPIPE_VERSION, MediaPipePredictor
from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.config import display_path
from seglib.errors import SeglibError
from seglib.evaluate import collect_probabilities, score_records
from seglib.export import export_onnx
from seglib.io import write_json_atomic, write_text_atomic
from seglib.model import MEDIAPIPE_SELFIE_TFLITE, count_parameters
from seglib.predict import Predictor
from seglib.runs import Run, read_json
from seglib.tflite_net import TFLiteNet, read_tflite
from seglib.transforms import describe_input

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
    from seglib.engine import MEMORY_FORMAT, train_step
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
    model = model_for(cfg, pretrained=False).to(memory_format=MEMORY_FORMAT)  # as the engine trains it
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loss_fn = DiceBCELoss.for_config(cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    batches = iter(loader)
    model.train()
    timed, images = 0.0, 0
    for step in range(train_steps + 2):
        t = time.perf_counter()
        batch = next(batches)
        train_step(model, batch["image"].contiguous(memory_format=MEMORY_FORMAT), batch["mask"], loss_fn, optimizer,
                   scaler)
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


PARTS = ("training", "prediction")


def run_all(train_steps: int = 8, predict_runs: int = 20, out_dir: Path | None = None, log=lambda _: None, *,
            parts=PARTS, checkpoint=None, photos: int | None = None, mediapipe_python=None, dataset_dir=None,
            splits_dir=None, fast_checkpoint=None) -> dict:
    """Measure the parts asked for and write reports/bench/bench.json and bench.md (other parts keep their
    numbers from the previous bench.json). `fast_checkpoint`: default FAST_CHECKPOINT where it exists."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise SeglibError(f"bench parts {sorted(unknown) or 'none'}: choose from {', '.join(PARTS)}")
    checkpoint = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if "prediction" in parts and not checkpoint.is_file():  # before the training part spends minutes
        raise SeglibError(f"{display_path(checkpoint)}: checkpoint not found (give one with --checkpoint PATH)")
    out_dir = Path(out_dir) if out_dir else config.reports_dir() / "bench"
    report = read_json(out_dir / "bench.json") or {}
    if "training" in parts:
        report.update(measure_training(train_steps, predict_runs, log))
    if "prediction" in parts:
        if fast_checkpoint is None and FAST_CHECKPOINT.is_file():
            fast_checkpoint = FAST_CHECKPOINT
        report["prediction"] = compare_predictions(checkpoint, photos=photos, mediapipe_python=mediapipe_python,
                                                   dataset_dir=dataset_dir, splits_dir=splits_dir,
                                                   fast_checkpoint=fast_checkpoint, log=log)
    write_json_atomic(out_dir / "bench.json", report)
    write_text_atomic(out_dir / "bench.md", render_markdown(report))
    return report


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def measure_training(train_steps: int, predict_runs: int, log=lambda _: None) -> dict:
    """The training part: every configuration of CONFIGS measured in its own process, and ours over theirs."""
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
    return {"machine": machine(), "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "train_steps": train_steps,
            "predict_runs": predict_runs, "results": results, "ratios_ours_over_theirs": ratios}


# ------------------------------------------------------------------------------ prediction side by side

DEFAULT_CHECKPOINT = config.PROJECT_ROOT / "reports" / "reference" / "best.pt"
# the same recipe trained at MediaPipe's own input size (256 px), published for the speed comparison
FAST_CHECKPOINT = config.PROJECT_ROOT / "reports" / "reference-256" / "best.pt"
# Where `make publish-reference` puts the val evaluation of a published checkpoint, relative to its folder.
PUBLISHED_VAL_METRICS = Path("metrics") / "val_metrics.json"
WARMUP_RUNS = 2  # untimed predictions before the first timed one (allocators, kernels, graph initialisation)
# and at least this long: threads left spinning by the work before (export, another runtime) settle first
WARMUP_SECONDS = 1.5
PYTORCH, ONNX, ONNX_ONE_PASS, MEDIAPIPE = ("ours, PyTorch", "ours, ONNX Runtime", "ours, ONNX Runtime, no TTA",
                                          "MediaPipe off the shelf")
ONNX_SMALL = "ours, ONNX Runtime, no TTA, MediaPipe's input size"
ONNX_FAST = "ours trained at 256 px, ONNX Runtime"


class _Timed:
    """A model (`evaluate.ProbabilityModel`) whose predictions are timed: `seconds` holds one time per photo."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.threshold, self.tta, self.source = predictor.threshold, predictor.tta, predictor.source
        self.seconds: list[float] = []

    def facts(self) -> dict:
        return self.predictor.facts()


class TimedPredictor(_Timed):
    """A Predictor run one photo at a time, each timed end to end (`predict_mask`: letterbox, model with TTA,
    probabilities back at the photo's size, threshold); the masks are handed on as 0/1 probabilities, so
    evaluation at the same threshold scores exactly them. The first photo is predicted WARMUP_RUNS more times
    (and for at least WARMUP_SECONDS), untimed."""

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        probs = []
        for image in images:
            if not self.seconds:  # warm up for WARMUP_RUNS predictions and at least WARMUP_SECONDS
                warm_start, runs = time.perf_counter(), 0
                while runs < WARMUP_RUNS or time.perf_counter() - warm_start < WARMUP_SECONDS:
                    self.predictor.predict_mask(image)
                    runs += 1
            start = time.perf_counter()
            mask = self.predictor.predict_mask(image)
            self.seconds.append(time.perf_counter() - start)
            probs.append(mask.astype(np.float32))
        return probs


class WarmedUpMediaPipe(_Timed):
    """MediaPipe's worker with the batch's first photo run once more before it, untimed: MediaPipe's first call
    initialises its graph and takes about twice as long. Times are MediaPipe's own, per photo (its `process`
    call: resize to 256x256, model, mask back at the photo's size), as the worker measures them."""

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        start = len(self.predictor.seconds)
        probs = self.predictor.predict_proba_batch(images[:1] + list(images))
        self.seconds += self.predictor.seconds[start + 1:]
        return probs[1:]


def val_protocol(checkpoint: Path, state: dict) -> tuple[float, bool, str]:
    """(threshold, TTA, where they come from) as `seglib evaluate` scored this checkpoint on test: those of its
    val evaluation (its run's eval/val/metrics.json, or PUBLISHED_VAL_METRICS beside a published checkpoint)
    when it was made for this checkpoint's epoch; else the checkpoint's own threshold without TTA."""
    for path in (Run(checkpoint.parent).metrics_file("val"), checkpoint.parent / PUBLISHED_VAL_METRICS):
        metrics = read_json(path) or {}
        if "threshold" in metrics and metrics.get("checkpoint_epoch") == state.get("epoch"):
            return float(metrics["threshold"]), bool(metrics.get("tta")), f"chosen on val, {display_path(path)}"
    return float(state["threshold"]), False, "stored in the checkpoint (no val evaluation of it found)"


@torch.inference_mode()
def forward_flops(model: torch.nn.Module, height: int, width: int) -> int:
    """FLOPs of one forward pass on a 1x3xHxW input, as torch's FlopCounterMode counts them (convolutions and
    matrix products: 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, height, width))
    return int(counter.get_total_flops())


def _timed_row(timed, split: str, photos: int | None, dataset_dir, splits_dir, batch_size: int) -> dict:
    """Run a timed predictor over the split's photos and score it like `seglib evaluate` (mask resolution)."""
    records = collect_probabilities(timed, split, dataset_dir, splits_dir, batch_size=batch_size, progress=False,
                                    limit=photos)
    per_image = score_records(records, timed.threshold)
    ms = 1000 * np.asarray(timed.seconds)
    return {"status": "measured", "n_photos": len(records), "ms_median": float(np.median(ms)),
            "ms_p90": float(np.percentile(ms, 90)), "mean_iou": float(per_image["iou"].mean()),
            "threshold": timed.threshold, "tta": bool(timed.tta),
            "ms_per_photo": dict(zip(per_image["id"].astype(str), np.round(ms, 2).tolist(), strict=True))}


def compare_predictions(checkpoint=None, *, photos: int | None = None, split: str = "test", mediapipe_python=None,
                        threads: int | None = None, dataset_dir=None, splits_dir=None, small_size: int = 256,
                        fast_checkpoint=None, log=lambda _: None) -> dict:
    """The prediction part: `checkpoint` (default the committed reference) in PyTorch and exported to ONNX
    Runtime (`threads` default: every core), with the threshold and TTA its val evaluation chose, next to
    MediaPipe off the shelf, on the first `photos` photos of `split` (default all). MediaPipe is `skipped`, with
    the reason, when its environment is missing or its worker fails. The exported model also runs once at
    `small_size` (MediaPipe's own input size) without TTA, where its graph takes any size. `fast_checkpoint`
    (a model trained at that size) adds a row of its own, in ONNX Runtime with its own val protocol."""
    checkpoint = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if photos is not None and photos < 1:
        raise SeglibError(f"photos {photos}: give at least 1 (or leave it out for the whole split)")
    state = load_checkpoint(checkpoint)
    threshold, tta, threshold_source = val_protocol(checkpoint, state)
    model, cfg = model_from_checkpoint(state)
    size = int(state["input_size"])
    flops = forward_flops(model, size, size)
    passes = 2 if tta else 1
    threads = int(threads or os.cpu_count() or 1)
    ours = {"input": describe_input(size, cfg.geometry), "parameters": count_parameters(model),
            "threshold_source": threshold_source, "flops_per_pass": flops}
    rows: dict[str, dict] = {}
    args = (split, photos, dataset_dir, splits_dir, 8)  # the photos, and 8 of them decoded at a time
    with tempfile.TemporaryDirectory(prefix="seglib-bench-") as tmp:
        log(f"{ONNX}: exporting {display_path(checkpoint)} ...")
        exported = export_onnx(checkpoint, Path(tmp) / "model.onnx")
        runtime = f"ONNX Runtime {onnxruntime.__version__}, {threads} threads"
        onnx = Predictor.from_onnx(exported.path, threads=threads, tta=tta, threshold=threshold,
                                   threshold_source=threshold_source)
        rows[ONNX] = {**_timed_row(TimedPredictor(onnx), *args), **ours, "flops_per_photo": passes * flops,
                      "runtime": runtime}
        if tta:  # what one pass costs and gives, with the threshold chosen for TTA
            onnx.tta = False
            rows[ONNX_ONE_PASS] = {**_timed_row(TimedPredictor(onnx), *args), **ours, "flops_per_photo": flops,
                                   "runtime": runtime}
        # the same file at MediaPipe's input size, one pass: as many FLOPs as MediaPipe spends
        if exported.dynamic_hw and small_size and small_size != size:
            onnx.tta = False
            onnx.set_input_size(small_size)
            rows[ONNX_SMALL] = {**_timed_row(TimedPredictor(onnx), *args), **ours,
                                "input": f"{describe_input(small_size, cfg.geometry)}; trained at {size}",
                                "flops_per_pass": forward_flops(model, small_size, small_size),
                                "flops_per_photo": forward_flops(model, small_size, small_size), "runtime": runtime}
        if fast_checkpoint is not None:
            # one thread: at 256 px two threads were slower than one on a 2-core machine (reports/bench/bench.md)
            rows[ONNX_FAST] = _onnx_row(Path(fast_checkpoint), Path(tmp) / "fast.onnx", 1, args,
                                        f"ONNX Runtime {onnxruntime.__version__}, 1 thread")
    log(f"{PYTORCH}: {display_path(checkpoint)}, threshold {threshold:g} ({threshold_source}), "
        f"{'flip TTA' if tta else 'no TTA'}")
    pytorch = Predictor.from_checkpoint(checkpoint, tta=tta, threshold=threshold, threshold_source=threshold_source)
    # PyTorch after ONNX Runtime: its idle OpenMP threads keep spinning for a while and slow ONNX Runtime's
    # threads on 2 cores, so the ONNX rows would depend on what ran just before them
    rows[PYTORCH] = {**_timed_row(TimedPredictor(pytorch), *args), **ours, "flops_per_photo": passes * flops,
                     "runtime": f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"}
    del pytorch
    log(f"{MEDIAPIPE}: mediapipe {MEDIAPIPE_VERSION} in its own environment ...")
    rows[MEDIAPIPE] = _mediapipe_row(mediapipe_python, split, photos, dataset_dir, splits_dir)
    rows = {PYTORCH: rows.pop(PYTORCH), **rows}
    pt, ort = rows[PYTORCH]["mean_iou"], rows[ONNX]["mean_iou"]
    return {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "checkpoint": display_path(checkpoint), "split": split, "n_photos": rows[PYTORCH]["n_photos"],
            "scored_at": "mask resolution (each photo at the size it is scored at, as seglib evaluate does)",
            "models": rows,
            "parity": {"pytorch_mean_iou": pt, "onnxruntime_mean_iou": ort,
                       "equal_to_3_decimals": round(pt, 3) == round(ort, 3),
                       "export_max_abs_logit_diff": exported.max_abs_diff, "export_tolerance": exported.tolerance}}


def _onnx_row(checkpoint: Path, onnx_path: Path, threads: int, args: tuple, runtime: str) -> dict:
    """Another checkpoint exported and timed in ONNX Runtime with the threshold and TTA its val evaluation chose."""
    state = load_checkpoint(checkpoint)
    threshold, tta, source = val_protocol(checkpoint, state)
    model, _ = model_from_checkpoint(state)
    size = int(state["input_size"])
    flops = forward_flops(model, size, size)
    predictor = Predictor.from_onnx(export_onnx(checkpoint, onnx_path).path, threads=threads, tta=tta,
                                    threshold=threshold, threshold_source=source)
    return {**_timed_row(TimedPredictor(predictor), *args), "input": describe_input(size, predictor.geometry),
            "parameters": count_parameters(model), "threshold_source": f"{display_path(checkpoint)}: {source}",
            "flops_per_pass": flops, "flops_per_photo": flops * (2 if tta else 1), "runtime": runtime}


def _mediapipe_row(python, split: str, photos: int | None, dataset_dir, splits_dir) -> dict:
    """MediaPipe off the shelf (threshold 0.5), timed by its worker; `skipped` with the reason when it cannot run."""
    spec, _ = read_tflite(MEDIAPIPE_SELFIE_TFLITE)
    _, height, width, _ = spec["shapes"][str(spec["input"])]
    graph = TFLiteNet(spec)
    facts = {"input": f"{height}x{width} (resized by MediaPipe)", "parameters": count_parameters(graph),
             "flops_per_pass": forward_flops(graph, height, width), "threshold_source": "the anchors' fixed threshold",
             "runtime": f"mediapipe {MEDIAPIPE_VERSION} (TensorFlow Lite), its own environment"}
    facts["flops_per_photo"] = facts["flops_per_pass"]
    try:
        timed = WarmedUpMediaPipe(MediaPipePredictor(python))
        return {**_timed_row(timed, split, photos, dataset_dir, splits_dir, 64), **facts}
    except SeglibError as exc:
        return {"status": "skipped", "reason": str(exc), **facts}


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


def render_markdown(report: dict) -> str:
    """bench.md: the training part and the prediction part, each when measured."""
    parts = []
    if "results" in report:
        parts.append("## Training, data pipeline and prediction speed: ours vs the course configuration\n\n"
                     + markdown_table(report))
    if "prediction" in report:
        parts.append(prediction_markdown(report["prediction"]))
    return "\n".join(parts) or "Nothing measured yet: run `make bench`.\n"


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


def prediction_markdown(part: dict) -> str:
    """The side-by-side table of the prediction part, the parity line and how ours compares with MediaPipe."""
    n = part["n_photos"]
    lines = [f"## Prediction side by side: {n} {part['split']} photos, end to end", "",
             f"Checkpoint `{part['checkpoint']}`. Each photo at {part['scored_at']}, decoded beforehand; the time "
             "runs from the RGB array to the mask at the photo's size (ours: letterbox, model, TTA, probabilities "
             "back at the photo's size, threshold; MediaPipe: its `process` call, as its worker times it). IoU "
             "scored by `seglib evaluate`'s code on the same photos.", "",
             "| model | runtime | input | TTA | threshold | ms / photo, median | p90 | mean IoU | parameters "
             "| GFLOPs / photo |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in part["models"].items():
        if row["status"] == "measured":
            measured = (f"{'flip' if row['tta'] else 'none'} | {row['threshold']:g} | {row['ms_median']:.1f} | "
                        f"{row['ms_p90']:.1f} | {row['mean_iou']:.3f}")
        else:
            measured = " | | skipped | | "
        lines.append(f"| {name} | {row['runtime']} | {row['input']} | {measured} | {row['parameters']:,} | "
                     f"{row['flops_per_photo'] / 1e9:.2f} |")
    thresholds = "; ".join(dict.fromkeys(f"{name.split(',')[0]}: {row['threshold_source']}"
                                         for name, row in part["models"].items()))
    lines += ["", f"Thresholds: {thresholds}.", "", *prediction_findings(part), "",
              "GFLOPs: torch's FlopCounterMode (convolutions, 2 per multiply-add) at the network's input size, "
              "times two with flip TTA; MediaPipe's graph counted the same way on its bundled "
              "selfie_segmentation.tflite run in PyTorch.",
              f"Machine: {part['machine']['cpu_count']} CPU cores, {part['machine']['platform']}; "
              f"{part['generated']}."]
    return "\n".join(lines) + "\n"


def prediction_findings(part: dict) -> list[str]:
    """One line each: the ONNX-vs-PyTorch parity and how ours in ONNX Runtime compares with MediaPipe."""
    parity, rows = part["parity"], part["models"]
    lines = [f"Parity: mean IoU in ONNX Runtime {parity['onnxruntime_mean_iou']:.4f}, in PyTorch "
             f"{parity['pytorch_mean_iou']:.4f}: {'equal' if parity['equal_to_3_decimals'] else 'NOT equal'} to 3 "
             f"decimals (logits within {parity['export_max_abs_logit_diff']:.2g} of PyTorch's when exported)."]
    ours, theirs = rows[ONNX], rows[MEDIAPIPE]
    if theirs["status"] != "measured":
        return [*lines, f"MediaPipe skipped: {theirs['reason']}"]
    ratio = ours["ms_median"] / theirs["ms_median"]
    speed = f"{ratio:.1f}x MediaPipe's time" if ratio > 1 else f"{1 / ratio:.1f}x faster than MediaPipe"
    lines.append(f"Ours in ONNX Runtime: {ours['ms_median']:.1f} ms per photo (median), {speed} "
                 f"({theirs['ms_median']:.1f} ms), at {ours['mean_iou'] - theirs['mean_iou']:+.3f} mean IoU; "
                 f"it computes {ours['flops_per_photo'] / theirs['flops_per_photo']:.1f}x MediaPipe's FLOPs per "
                 f"photo ({ours['input']}{', two passes for TTA' if ours['tta'] else ''} vs {theirs['input']}).")
    if ONNX_FAST in rows:
        fast = rows[ONNX_FAST]
        ratio = fast["ms_median"] / theirs["ms_median"]
        verdict = ("no slower than" if ratio <= 1 else f"{ratio:.2f}x the time of")
        better = "higher" if fast["mean_iou"] > theirs["mean_iou"] else "not higher"
        lines.append(f"Ours trained at 256 px in ONNX Runtime: {fast['ms_median']:.1f} ms per photo (median), "
                     f"{verdict} MediaPipe ({theirs['ms_median']:.1f} ms), mean IoU {fast['mean_iou']:.3f}, "
                     f"{better} than MediaPipe's ({fast['mean_iou'] - theirs['mean_iou']:+.3f}); "
                     f"{fast['flops_per_photo'] / theirs['flops_per_photo']:.1f}x MediaPipe's FLOPs per photo.")
    if ONNX_ONE_PASS in rows:
        lines.append(_against_mediapipe("Ours in ONNX Runtime without TTA (same threshold)", rows[ONNX_ONE_PASS], theirs))
    if ONNX_SMALL in rows:
        small = rows[ONNX_SMALL]
        lines.append(_against_mediapipe(f"Ours in ONNX Runtime at {small['input']}, no TTA", small, theirs))
    return lines


def _against_mediapipe(label: str, ours: dict, theirs: dict) -> str:
    return (f"{label}: {ours['ms_median']:.1f} ms per photo, {ours['ms_median'] / theirs['ms_median']:.1f}x "
            f"MediaPipe's time, mean IoU {ours['mean_iou']:.3f} ({ours['mean_iou'] - theirs['mean_iou']:+.3f} over "
            "MediaPipe).")
