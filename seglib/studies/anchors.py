"""Off-the-shelf anchor: MediaPipe selfie segmentation, scored exactly like our models.

`seglib anchor` (or `make mediapipe-anchor`) scores it on val and test at mask resolution with the
fixed threshold 0.5, with the same baselines, and writes `reports/anchors/mediapipe-selfie/<split>/`.

mediapipe 0.10.21 requires numpy<2 and opencv-contrib-python, which cannot share the main environment (numpy 2,
albumentations' opencv-python-headless), so it runs in its own virtual environment (`.venv-mediapipe`, made by
`make mediapipe-anchor`; or $SEGLIB_MEDIAPIPE_PYTHON) as a worker process: photos go to it as PNG files and
probabilities come back as .npy files. Its model (`selfie_segmentation.tflite`) ships inside the wheel
(Apache-2.0); nothing is downloaded at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import write_json_atomic
from seglib.models.model_registry import MEDIAPIPE_SELFIE
from seglib.runs import METRICS, PER_IMAGE

ENV_PYTHON = "SEGLIB_MEDIAPIPE_PYTHON"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
MEDIAPIPE_VERSION = "0.10.21"
THRESHOLD = 0.5  # the anchors' protocol: per image at the mask's resolution, threshold 0.5


def default_python() -> Path:
    value = os.environ.get(ENV_PYTHON)
    return Path(value) if value else paths.PROJECT_ROOT / ".venv-mediapipe" / "bin" / "python"


class MediaPipePredictor:
    """A predictor (`predict_proba_batch`) backed by MediaPipe selfie segmentation in its own environment."""

    def __init__(self, python: str | Path | None = None, model_selection: int = 0):
        self.python = Path(python) if python else default_python()
        if not self.python.is_file():
            raise SeglibError(f"{self.python}: no mediapipe environment; run `make mediapipe-anchor` (it makes "
                              f".venv-mediapipe with mediapipe=={MEDIAPIPE_VERSION}) or set {ENV_PYTHON}")
        if not os.access(self.python, os.X_OK):
            raise SeglibError(f"{self.python}: not executable; give the mediapipe environment's python "
                              f"(.venv-mediapipe/bin/python, made by `make mediapipe-anchor`) or chmod +x it")
        if model_selection not in (0, 1):
            raise SeglibError(f"model_selection {model_selection}: 0 (general, 256x256) or 1 (landscape, 144x256)")
        self.model_selection = model_selection
        self.threshold, self.tta = THRESHOLD, False
        self.source = f"mediapipe=={MEDIAPIPE_VERSION} selfie segmentation, model_selection={model_selection}"
        self.weights = (f"MediaPipe selfie_segmentation{'_landscape' if model_selection else ''}.tflite "
                        f"(inside the mediapipe {MEDIAPIPE_VERSION} wheel, Apache-2.0), off the shelf")
        self.seconds: list[float] = []  # MediaPipe's own time per image, as the worker measured it

    def facts(self) -> dict:
        """What evaluation records about it (`evaluate.ProbabilityModel`): no epoch, no training split."""
        return {"epoch": None, "val_iou": None, "weights": self.weights, "profile": "off the shelf",
                "model": MEDIAPIPE_SELFIE, "input_size": None, "threshold": THRESHOLD, "data_split": None}

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not images:
            return []
        with tempfile.TemporaryDirectory(prefix="seglib-mediapipe-") as tmp:
            folder = Path(tmp)
            for i, rgb in enumerate(images):
                cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            try:
                proc = subprocess.run([str(self.python), str(WORKER), str(folder), str(self.model_selection)],
                                      capture_output=True, text=True)
            except OSError as exc:  # not a program (no interpreter line, another architecture)
                raise SeglibError(f"{self.python}: cannot be run as the mediapipe python "
                                  f"({exc.strerror or exc})") from None
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise SeglibError(f"mediapipe worker ({self.python}) failed: {last}")
            probs = [np.load(folder / f"{i}.npy") for i in range(len(images))]
            self.seconds += json.loads((folder / "times.json").read_text())
        for prob, rgb in zip(probs, images, strict=True):
            if prob.shape != rgb.shape[:2]:
                raise SeglibError(f"mediapipe returned a {prob.shape} mask for a {rgb.shape[:2]} photo")
        return probs


def default_out_dir() -> Path:
    """reports/anchors/mediapipe-selfie ($SEGLIB_REPORTS_DIR moves it with the other reports)."""
    return paths.reports_dir() / "anchors" / MEDIAPIPE_SELFIE


def score_anchor(splits=("val", "test"), *, out_dir=None, python=None, model_selection: int = 0,
                 dataset_dir=None, splits_dir=None, overwrite: bool = False, progress: bool = True, pairs=None):
    """Evaluate MediaPipe on each split (and the external `pairs`, a `PairSet`) like a model (fixed threshold
    0.5); returns {split or set name: EvalResult}."""
    from seglib.evaluate import EvalOptions, evaluate_run

    options = EvalOptions(threshold_source="checkpoint", overwrite=overwrite, progress=progress, batch_size=64)
    predictor = MediaPipePredictor(python, model_selection)
    out_dir = Path(out_dir) if out_dir else default_out_dir()
    results = {}
    for split in [*splits, *([pairs] if pairs is not None else [])]:
        start = len(predictor.seconds)
        result = evaluate_run(split=split, out_dir=out_dir, predictor=predictor, dataset_dir=dataset_dir,
                              splits_dir=splits_dir, options=options)
        spent = predictor.seconds[start:]
        result.metrics["mediapipe_ms_per_image_median"] = round(1000 * float(np.median(spent)), 2) if spent else None
        write_json_atomic(result.out_dir / METRICS, result.metrics)
        results[result.split] = result
    return results


ANCHOR_ROW = "MediaPipe (off the shelf)"


def with_anchor(table, metrics: dict, out_dir=None):
    """`table` (a headline table) plus a MediaPipe row when the anchor was scored on exactly the same images
    (same split and image list); otherwise `table` unchanged."""
    from seglib.evaluate import headline_from_metrics

    path = (Path(out_dir) if out_dir else default_out_dir()) / str(metrics.get("split")) / METRICS
    if not path.is_file():
        return table
    try:
        anchor = json.loads(path.read_text())
        if anchor.get("image_ids_sha1") != metrics.get("image_ids_sha1"):
            return table
        row = headline_from_metrics(anchor).loc[["model"]].rename(index={"model": ANCHOR_ROW})
    except (ValueError, KeyError, TypeError):
        return table
    import pandas as pd

    return pd.concat([table.loc[["model"]], row, table.drop(index="model")])


def paired_difference(per_image, metrics: dict, out_dir=None, n_boot: int = 2000) -> dict | None:
    """Model minus MediaPipe, photo by photo, on the same images: mean IoU difference with a 95% bootstrap CI
    and how many photos each does better on. None where the anchor was not scored on these images."""
    import pandas as pd

    from seglib.metrics import bootstrap_ci

    folder = (Path(out_dir) if out_dir else default_out_dir()) / str(metrics.get("split"))
    try:
        anchor = json.loads((folder / METRICS).read_text())
        if anchor.get("image_ids_sha1") != metrics.get("image_ids_sha1"):
            return None
        theirs = pd.read_csv(folder / PER_IMAGE, usecols=["id", "iou"], dtype={"id": str})
    except (OSError, ValueError, KeyError):
        return None
    both = per_image[["id", "iou"]].astype({"id": str}).merge(theirs, on="id", suffixes=("", "_anchor"))
    if not len(both) == len(per_image) == len(theirs):
        return None
    diff = (both["iou"] - both["iou_anchor"]).to_numpy()
    return {"n_images": len(diff), "mean_difference": float(diff.mean()),
            "ci95": bootstrap_ci(diff, n_boot=n_boot), "model_better": int((diff > 0).sum()),
            "anchor_better": int((diff < 0).sum())}
