"""Off-the-shelf anchors: MediaPipe's selfie segmenter and MediaPipe Pose's person mask, scored exactly like our models.

`seglib anchor` (or `make mediapipe-anchor`) scores each on val and test at mask resolution with the fixed threshold
0.5, with the same baselines, and writes `reports/anchors/mediapipe-selfie/<split or set>/` and
`reports/anchors/mediapipe-pose/<split or set>/`: the built-in set's splits as `val` and `test`, another registered
set's as `NAME-val` and `NAME-test` (`studies.domains.split_folder`), a whole external set under its name.

mediapipe 0.10.21 requires numpy<2 and opencv-contrib-python, which cannot share the main environment (numpy 2,
albumentations' opencv-python-headless), so it runs in its own virtual environment (`.venv-mediapipe`, made by
`make mediapipe-anchor`; or $SEGLIB_MEDIAPIPE_PYTHON) as a worker process: photos go to it as PNG files and
probabilities come back as .npy files. Both models ship inside the wheel (Apache-2.0): `selfie_segmentation.tflite`
and, for Pose (static images, model_complexity=1, segmentation on), `pose_landmark_full.tflite` with its person
detector. Pose finds one person or none; where it finds none its mask is all zero, and the photos where that
happened are counted in metrics.json (`no_pose_found`). Nothing is downloaded at run time. This module imports no
numpy at its top, so the command line reads its names cheaply.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.models.model_registry import MEDIAPIPE_SELFIE
from seglib.runs import METRICS, PER_IMAGE

ENV_PYTHON = "SEGLIB_MEDIAPIPE_PYTHON"
WORKER = Path(__file__).with_name("mediapipe_worker.py")
MEDIAPIPE_VERSION = "0.10.21"
THRESHOLD = 0.5  # the anchors' protocol: per image at the mask's resolution, threshold 0.5
SELFIE, POSE = "selfie", "pose"  # `seglib anchor --model`; POSE is also the worker's MODEL argument
MODELS = (SELFIE, POSE)
MEDIAPIPE_POSE = "mediapipe-pose"  # Pose's person mask as results name it (its folder under reports/anchors/)
ANCHOR_NAMES = {SELFIE: MEDIAPIPE_SELFIE, POSE: MEDIAPIPE_POSE}
TITLES = {SELFIE: "MediaPipe selfie segmentation", POSE: "MediaPipe Pose's person mask"}
NO_POSE = "no_pose_found"  # metrics.json: how many photos Pose found no person on (its mask all zero there)


def default_python() -> Path:
    value = os.environ.get(ENV_PYTHON)
    return Path(value) if value else paths.PROJECT_ROOT / ".venv-mediapipe" / "bin" / "python"


class MediaPipePredictor:
    """A predictor (`predict_proba_batch`) backed by a MediaPipe model (`SELFIE` or `POSE`) in its own environment."""

    def __init__(self, python: str | Path | None = None, model_selection: int = 0, model: str = SELFIE):
        self.python = Path(python) if python else default_python()
        if not self.python.is_file():
            raise SeglibError(f"{self.python}: no mediapipe environment; run `make mediapipe-anchor` (it makes "
                              f".venv-mediapipe with mediapipe=={MEDIAPIPE_VERSION}) or set {ENV_PYTHON}")
        if not os.access(self.python, os.X_OK):
            raise SeglibError(f"{self.python}: not executable; give the mediapipe environment's python "
                              f"(.venv-mediapipe/bin/python, made by `make mediapipe-anchor`) or chmod +x it")
        if model not in MODELS:
            raise SeglibError(f"MediaPipe model {model!r}: expected one of {', '.join(MODELS)}")
        if model_selection not in (0, 1):
            raise SeglibError(f"model_selection {model_selection}: 0 (general, 256x256) or 1 (landscape, 144x256)")
        self.model, self.model_selection = model, model_selection
        self.threshold, self.tta = THRESHOLD, False
        if model == POSE:
            self.source = (f"mediapipe=={MEDIAPIPE_VERSION} pose, static_image_mode, model_complexity=1, "
                           "enable_segmentation")
            self.weights = (f"MediaPipe pose_landmark_full.tflite with its person detector (inside the mediapipe "
                            f"{MEDIAPIPE_VERSION} wheel, Apache-2.0), off the shelf")
        else:
            self.source = f"mediapipe=={MEDIAPIPE_VERSION} selfie segmentation, model_selection={model_selection}"
            self.weights = (f"MediaPipe selfie_segmentation{'_landscape' if model_selection else ''}.tflite "
                            f"(inside the mediapipe {MEDIAPIPE_VERSION} wheel, Apache-2.0), off the shelf")
        self.seconds: list[float] = []  # MediaPipe's own time per image, as the worker measured it
        self.found: list[bool] = []  # per image, whether the model found a person (Pose may find none)

    def facts(self) -> dict:
        """What evaluation records about it (`evaluate.ProbabilityModel`): no epoch, no training split."""
        return {"epoch": None, "val_iou": None, "weights": self.weights, "profile": "off the shelf",
                "model": ANCHOR_NAMES[self.model], "input_size": None, "threshold": THRESHOLD, "data_split": None}

    def predict_proba_batch(self, images: list) -> list:
        import cv2
        import numpy as np

        if not images:
            return []
        argument = POSE if self.model == POSE else str(self.model_selection)
        with tempfile.TemporaryDirectory(prefix="seglib-mediapipe-") as tmp:
            folder = Path(tmp)
            for i, rgb in enumerate(images):
                cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            try:
                proc = subprocess.run([str(self.python), str(WORKER), str(folder), argument],
                                      capture_output=True, text=True)
            except OSError as exc:  # not a program (no interpreter line, another architecture)
                raise SeglibError(f"{self.python}: cannot be run as the mediapipe python "
                                  f"({exc.strerror or exc})") from None
            if proc.returncode:
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise SeglibError(f"mediapipe worker ({self.python}) failed: {last}")
            probs = [np.load(folder / f"{i}.npy") for i in range(len(images))]
            self.seconds += json.loads((folder / "times.json").read_text())
            found = folder / "found.json"
            self.found += json.loads(found.read_text()) if found.is_file() else [True] * len(images)
        for prob, rgb in zip(probs, images, strict=True):
            if prob.shape != rgb.shape[:2]:
                raise SeglibError(f"mediapipe returned a {prob.shape} mask for a {rgb.shape[:2]} photo")
        return probs


def default_out_dir(model: str = SELFIE) -> Path:
    """reports/anchors/mediapipe-selfie (or mediapipe-pose); $SEGLIB_REPORTS_DIR moves it with the other reports."""
    return paths.reports_dir() / "anchors" / ANCHOR_NAMES[model]


def score_anchor(splits=("val", "test"), *, model: str = SELFIE, out_dir=None, python=None, model_selection: int = 0,
                 dataset_dir=None, splits_dir=None, overwrite: bool = False, progress: bool = True, pairs=None):
    """Evaluate a MediaPipe model (`SELFIE` or `POSE`) on each of the built-in set's `splits` and on `pairs` (a
    `PairSet` or a list of them: other sets' splits, `data.selection.split_test_pairs`, or external sets) like a model,
    with the fixed threshold 0.5; returns {split or set name: EvalResult}."""
    import numpy as np

    from seglib.evaluate import EvalOptions, evaluate_run
    from seglib.infra.io import write_json_atomic

    options = EvalOptions(threshold_source="checkpoint", overwrite=overwrite, progress=progress, batch_size=64)
    predictor = MediaPipePredictor(python, model_selection, model)
    out_dir = Path(out_dir) if out_dir else default_out_dir(model)
    extra = [] if pairs is None else list(pairs) if isinstance(pairs, (list, tuple)) else [pairs]
    results = {}
    for split in [*splits, *extra]:
        start = len(predictor.seconds)
        result = evaluate_run(split=split, out_dir=out_dir, predictor=predictor, dataset_dir=dataset_dir,
                              splits_dir=splits_dir, options=options)
        spent = predictor.seconds[start:]
        result.metrics["mediapipe_ms_per_image_median"] = round(1000 * float(np.median(spent)), 2) if spent else None
        if model == POSE:
            result.metrics[NO_POSE] = int(sum(not found for found in predictor.found[start:]))
        write_json_atomic(result.out_dir / METRICS, result.metrics)
        results[result.split] = result
    return results


def anchor_scores(model: str, name: str, split: str, root: Path | None = None):
    """(per-photo scores, metrics) of anchor `model` on split `split` of registered set `name` as saved under
    `root` (reports/anchors by default): its own folder for that split, else its scores of the
    whole set (the caller keeps the split's photos). None where neither is saved."""
    import pandas as pd

    from seglib.studies.domains import split_folder

    base = (root if root is not None else paths.reports_dir() / "anchors") / ANCHOR_NAMES[model]
    for folder in (base / split_folder(name, split), base / name):
        if (folder / PER_IMAGE).is_file() and (folder / METRICS).is_file():
            scores = pd.read_csv(folder / PER_IMAGE, usecols=["id", "iou", "boundary_iou"], dtype={"id": str})
            return scores, json.loads((folder / METRICS).read_text())
    return None


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


def write_teacher_masks(model: str, sets: list[str], out: Path, *, python=None, batch: int = 32) -> dict[str, int]:
    """A MediaPipe model's probabilities of each training photo of `sets`, as a teacher for `distill_weight` with
    `teacher_masks=out`: `out/<set>/<photo stem>.npy` (uint8 0-255, at the photo's resolution). Photos already written
    are kept. Returns the number of photos written per set."""
    import numpy as np

    from seglib.data.selection import split_test_pairs
    from seglib.infra.io import atomic_path, load_rgb

    predictor = MediaPipePredictor(python, model=model)
    written = {}
    for name in sets:
        # 1. the set's training photos not written yet
        items = split_test_pairs(name, "train").items
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        todo = [Path(p) for p in items["image_path"] if not (folder / f"{Path(p).stem}.npy").is_file()]
        # 2. MediaPipe in batches, each probability written atomically
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            for path, prob in zip(chunk, predictor.predict_proba_batch([load_rgb(p) for p in chunk]), strict=True):
                with atomic_path(folder / f"{path.stem}.npy") as tmp, open(tmp, "wb") as fh:
                    np.save(fh, np.clip(np.rint(prob * 255), 0, 255).astype(np.uint8))
        written[name] = len(todo)
    return written
