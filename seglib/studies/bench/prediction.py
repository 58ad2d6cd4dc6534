"""The prediction part of the bench: a checkpoint in PyTorch and ONNX Runtime beside MediaPipe off the shelf."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch.utils.flop_counter import FlopCounterMode

from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.evaluate import collect_probabilities, score_records
from seglib.export import export_onnx
from seglib.infra import paths
from seglib.infra.devices import describe_machine
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.models.model import MEDIAPIPE_SELFIE_TFLITE, count_parameters
from seglib.models.tflite_net import TFLiteNet, read_tflite
from seglib.predict import Predictor
from seglib.predict.val_choice import val_protocol
from seglib.runs import BEST
from seglib.studies.anchors import MEDIAPIPE_VERSION, MediaPipePredictor
from seglib.studies.bench.sections import MEDIAPIPE, ONNX, ONNX_FAST, ONNX_ONE_PASS, ONNX_SMALL, PYTORCH
from seglib.transforms.pipelines import describe_input

logger = logging.getLogger(__name__)
DEFAULT_CHECKPOINT = paths.PROJECT_ROOT / "reports" / "reference" / BEST
# the same recipe trained at MediaPipe's own input size (256 px), published for the speed comparison
FAST_CHECKPOINT = paths.PROJECT_ROOT / "reports" / "reference-256" / BEST
WARMUP_RUNS = 2  # untimed predictions before the first timed one (allocators, kernels, graph initialisation)
# and at least this long: threads left spinning by the work before (export, another runtime) settle first
WARMUP_SECONDS = 1.5


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
                        fast_checkpoint=None) -> dict:
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
    threshold, tta, threshold_source, *_ = val_protocol(checkpoint, state)
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
        logger.info(f"{ONNX}: exporting {display_path(checkpoint)} ...")
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
    logger.info(f"{PYTORCH}: {display_path(checkpoint)}, threshold {threshold:g} ({threshold_source}), "
                f"{'flip TTA' if tta else 'no TTA'}")
    pytorch = Predictor.from_checkpoint(checkpoint, tta=tta, threshold=threshold, threshold_source=threshold_source)
    # PyTorch after ONNX Runtime: its idle OpenMP threads keep spinning for a while and slow ONNX Runtime's
    # threads on 2 cores, so the ONNX rows would depend on what ran just before them
    rows[PYTORCH] = {**_timed_row(TimedPredictor(pytorch), *args), **ours, "flops_per_photo": passes * flops,
                     "runtime": f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"}
    del pytorch
    logger.info(f"{MEDIAPIPE}: mediapipe {MEDIAPIPE_VERSION} in its own environment ...")
    rows[MEDIAPIPE] = _mediapipe_row(mediapipe_python, split, photos, dataset_dir, splits_dir)
    rows = {PYTORCH: rows.pop(PYTORCH), **rows}
    pt, ort = rows[PYTORCH]["mean_iou"], rows[ONNX]["mean_iou"]
    return {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": describe_machine(),
            "checkpoint": display_path(checkpoint), "split": split, "n_photos": rows[PYTORCH]["n_photos"],
            "scored_at": "mask resolution (each photo at the size it is scored at, as seglib evaluate does)",
            "models": rows,
            "parity": {"pytorch_mean_iou": pt, "onnxruntime_mean_iou": ort,
                       "equal_to_3_decimals": round(pt, 3) == round(ort, 3),
                       "export_max_abs_logit_diff": exported.max_abs_diff, "export_tolerance": exported.tolerance}}


def _onnx_row(checkpoint: Path, onnx_path: Path, threads: int, args: tuple, runtime: str) -> dict:
    """Another checkpoint exported and timed in ONNX Runtime with the threshold and TTA its val evaluation chose."""
    state = load_checkpoint(checkpoint)
    threshold, tta, source, *_ = val_protocol(checkpoint, state)
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


