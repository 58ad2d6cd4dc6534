"""IoU evaluation at the ground truth's resolution, with the threshold chosen on val and simple baselines.

Protocol (`seglib evaluate`):

- every image is decoded at its MASK's size (`load_pair`: the data set's masks are the ground truth, and 198
  of them are a downscale of their photo); the model's probabilities are mapped back to that size
  (`Predictor.predict_proba`) and scored there, never at the training size;
- the probability threshold is chosen on val (a sweep of `SWEEP_THRESHOLDS`, maximising the mean per-image
  IoU; ties go to the threshold closest to 0.5) and then applied unchanged to test;
- test is scored once per run: re-scoring an existing `eval/test` needs `overwrite=True` (`--overwrite`);
- three baselines are scored the same way on the same split: all-background, all-foreground and a
  mean-mask prior built from the TRAIN split only.

Outputs go to `runs/NAME/eval/<split>/` (or `OUT/<split>/` for a checkpoint outside runs/):
`per_image.csv`, `metrics.json` (written last: its presence means the evaluation completed) and, on val,
`threshold_sweep.csv`. Probability maps are kept in memory only, for the length of one call.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import seglib
from seglib import config
from seglib.config import display_path
from seglib.data.dataset import SegmentationDataset, load_pair
from seglib.data.splits import check_scored_split
from seglib.errors import SeglibError
from seglib.io import check_writable_dir, load_mask_raw, write_json_atomic, write_text_atomic
from seglib.metrics import image_scores, summarise
from seglib.runs import Run, same_checkpoint
from seglib.transforms import letterbox_box, unletterbox

SPLITS = ("val", "test")
SWEEP_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.30, 0.70 + 1e-9, 0.05), 2))
PRIOR_SIZE = 128
BASELINES = ("all-background", "all-foreground", "mean-mask prior")
BASELINE_KEYS = ("mean_iou", "median_iou", "pooled_iou", "mean_dice", "mean_boundary_iou", "mean_iou_ci95")
HEADLINE_COLUMNS = ["mean_iou", "ci95_low", "ci95_high", "median_iou", "pooled_iou", "mean_dice",
                    "mean_boundary_iou"]
PER_IMAGE_COLUMNS = ["id", "iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn", "fg_fraction",
                     "fg_fraction_pred", "height", "width", "image_height", "image_width", "resized",
                     "mean_brightness", "aspect_ratio", "is_grayscale", "uncertain_fraction"]
SCORED_AT = "mask resolution"


@dataclass
class EvalResult:
    """What one `evaluate_run` call scored and wrote."""

    split: str
    out_dir: Path  # the split's folder, e.g. runs/NAME/eval/test
    metrics: dict
    per_image: pd.DataFrame
    sweep: pd.DataFrame | None = None  # val only
    paths: list[Path] = field(default_factory=list)
    val_result: EvalResult | None = None  # set when val had to be evaluated first (for test's threshold)

    @property
    def threshold(self) -> float:
        return float(self.metrics["threshold"])

    def table(self) -> pd.DataFrame:
        """Model and baselines side by side (the same frame as `headline_table`)."""
        return headline_from_metrics(self.metrics)


# --------------------------------------------------------------------------------------------- data


def split_items(split: str, dataset_dir=None, splits_dir=None) -> pd.DataFrame:
    """id, image_path, mask_path of every pair in a split (nothing decoded yet)."""
    return SegmentationDataset.from_split(split, dataset_dir, splits_dir, cache=False).items


def _image_facts(rgb: np.ndarray, image_path: Path) -> dict:
    """Per-image covariates for error analysis (computed on the image at mask size)."""
    from PIL import Image

    with Image.open(image_path) as img:  # header only: the stored size, before resizing to the mask
        width, height = img.size
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {
        "image_height": height,
        "image_width": width,
        "resized": (height, width) != (h, w),
        "mean_brightness": float(gray.mean() / 255.0),
        "aspect_ratio": w / h,
        "is_grayscale": bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()),
    }


def _iter_batches(items: pd.DataFrame, batch_size: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, leave=False, disable=not progress)
    try:
        for start in range(0, len(items), batch_size):
            rows = items.iloc[start:start + batch_size]
            pairs = [load_pair(Path(r.image_path), Path(r.mask_path)) for r in rows.itertuples(index=False)]
            yield rows, pairs
            bar.update(len(rows))
    finally:
        bar.close()


def _predict(predictor, images: list[np.ndarray], masks: list[np.ndarray], ids: list[str]) -> list[np.ndarray]:
    probs = predictor.predict_proba_batch(images)
    out = []
    for prob, mask, id_ in zip(probs, masks, ids, strict=True):
        prob = np.asarray(prob, dtype=np.float32)
        if prob.shape != mask.shape:
            raise SeglibError(f"image {id_}: prediction is {prob.shape[1]}x{prob.shape[0]} but its mask is "
                              f"{mask.shape[1]}x{mask.shape[0]}; predictions must be at mask resolution")
        out.append(prob)
    return out


def collect_probabilities(predictor, split: str, dataset_dir=None, splits_dir=None, *, batch_size: int = 8,
                          progress: bool = True, limit: int | None = None) -> list[dict]:
    """Run the model once over a split; records hold id, mask (uint8 0/1) and prob (float32), both at mask size,
    plus the image covariates. Kept in memory so a threshold sweep never re-runs the model."""
    items = split_items(split, dataset_dir, splits_dir)
    if limit:
        items = items.head(limit)
    records = []
    for rows, pairs in _iter_batches(items, batch_size, progress, f"evaluate {split}"):
        ids = rows["id"].astype(str).tolist()
        images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
        probs = _predict(predictor, images, masks, ids)
        for id_, row, image, mask, prob in zip(ids, rows.itertuples(index=False), images, masks, probs,
                                               strict=True):
            records.append({"id": id_, "mask": mask, "prob": prob, **_image_facts(image, Path(row.image_path))})
    return records


def predictions_for_split(predictor, split: str, dataset_dir=None, limit: int | None = None, *,
                          splits_dir=None, batch_size: int = 8, progress: bool = False) -> list[dict]:
    """Images, masks and probabilities of a split for display (notebooks 04/05).

    Each dict: id, image (HxWx3 uint8 RGB at the mask's size), mask (uint8 0/1), prob (float32 HxW),
    pred (uint8 0/1 at `predictor.threshold`).
    """
    items = split_items(split, dataset_dir, splits_dir)
    if limit:
        items = items.head(limit)
    out = []
    for rows, pairs in _iter_batches(items, batch_size, progress, f"predict {split}"):
        ids = rows["id"].astype(str).tolist()
        images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
        probs = _predict(predictor, images, masks, ids)
        for id_, image, mask, prob in zip(ids, images, masks, probs, strict=True):
            out.append({"id": id_, "image": image, "mask": mask, "prob": prob,
                        "pred": (prob >= predictor.threshold).astype(np.uint8)})
    return out


# --------------------------------------------------------------------------------------------- scoring


def score_records(records: list[dict], threshold: float) -> pd.DataFrame:
    """per_image table: one row of scores (at mask resolution) and covariates per record."""
    rows = []
    for rec in records:
        mask = rec["mask"].astype(bool)
        scores = image_scores(rec["prob"] >= threshold, mask)
        prob = rec["prob"]
        rows.append({
            "id": rec["id"],
            **{k: scores[k] for k in ("iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn")},
            "fg_fraction": scores["fg_fraction_true"],
            "fg_fraction_pred": scores["fg_fraction_pred"],
            "height": mask.shape[0],
            "width": mask.shape[1],
            **{k: rec[k] for k in ("image_height", "image_width", "resized", "mean_brightness", "aspect_ratio",
                                   "is_grayscale")},
            "uncertain_fraction": float(((prob > 0.3) & (prob < 0.7)).mean()),
        })
    return pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)


def threshold_sweep(records: list[dict], thresholds=SWEEP_THRESHOLDS) -> pd.DataFrame:
    """Mean per-image IoU and pooled IoU of the cached probabilities at each threshold."""
    if not records:
        raise SeglibError("no images to sweep thresholds on")
    rows = []
    for t in thresholds:
        ious, tp_s, fp_s, fn_s = [], 0, 0, 0
        for rec in records:
            pred, true = rec["prob"] >= t, rec["mask"].astype(bool)
            tp = int(np.count_nonzero(pred & true))
            fp = int(np.count_nonzero(pred & ~true))
            fn = int(np.count_nonzero(~pred & true))
            ious.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
            tp_s, fp_s, fn_s = tp_s + tp, fp_s + fp, fn_s + fn
        den = tp_s + fp_s + fn_s
        rows.append({"threshold": float(t), "mean_iou": float(np.mean(ious)),
                     "pooled_iou": 1.0 if den == 0 else tp_s / den})
    return pd.DataFrame(rows, columns=["threshold", "mean_iou", "pooled_iou"])


def choose_threshold(sweep: pd.DataFrame, tol: float = 1e-9) -> float:
    """The threshold with the best mean IoU; ties (within `tol`) go to the one closest to 0.5, then the lower."""
    best = sweep["mean_iou"].max()
    tied = sweep[sweep["mean_iou"] >= best - tol]
    order = sorted(tied["threshold"], key=lambda t: (round(abs(t - 0.5), 9), t))
    return float(order[0])


# --------------------------------------------------------------------------------------------- baselines

_PRIOR_CACHE: dict[tuple, np.ndarray] = {}


def _binary_mask(path: Path) -> np.ndarray:
    raw = load_mask_raw(path)
    return (raw > (127 if raw.max() > 1 else 0)).astype(np.uint8)


def _letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/1 mask letterboxed into a size x size float square (area filter, zero padding)."""
    h, w = mask.shape
    top, left, nh, nw = letterbox_box(h, w, size)
    out = np.zeros((size, size), dtype=np.float32)
    out[top:top + nh, left:left + nw] = cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def mean_mask_prior(dataset_dir=None, splits_dir=None, size: int = PRIOR_SIZE) -> np.ndarray:
    """The TRAIN split's masks letterboxed to size x size, averaged, thresholded at 0.5 (uint8 0/1).

    Never fitted on val or test. Cached in memory per (data set, splits folder, size).
    """
    items = split_items("train", dataset_dir, splits_dir)
    split_file = (Path(splits_dir) if splits_dir is not None else config.splits_dir()) / "train.csv"
    key = (str(Path(items["mask_path"].iloc[0]).parent.resolve()) if len(items) else "",
           str(split_file.resolve()), split_file.stat().st_mtime_ns, size)
    if key not in _PRIOR_CACHE:
        if not len(items):
            raise SeglibError(f"{split_file}: train split is empty; the mean-mask prior needs training masks")
        total = np.zeros((size, size), dtype=np.float64)
        for path in items["mask_path"]:
            total += _letterbox_mask(_binary_mask(Path(path)), size)
        _PRIOR_CACHE[key] = (total / len(items) >= 0.5).astype(np.uint8)
    return _PRIOR_CACHE[key]


def prior_for(prior: np.ndarray, height: int, width: int) -> np.ndarray:
    """The square prior un-letterboxed to an HxW image (bilinear, then >= 0.5)."""
    return (unletterbox(prior.astype(np.float32), height, width) >= 0.5).astype(np.uint8)


def _baseline_predictions(mask: np.ndarray, prior: np.ndarray) -> dict[str, np.ndarray]:
    h, w = mask.shape
    return {"all-background": np.zeros((h, w), dtype=np.uint8),
            "all-foreground": np.ones((h, w), dtype=np.uint8),
            "mean-mask prior": prior_for(prior, h, w)}


def _baseline_summaries(masks: list[np.ndarray], prior: np.ndarray, n_boot: int) -> dict[str, dict]:
    rows: dict[str, list[dict]] = {name: [] for name in BASELINES}
    for mask in masks:
        for name, pred in _baseline_predictions(mask, prior).items():
            rows[name].append(image_scores(pred, mask))
    out = {}
    for name in BASELINES:
        summary = summarise(pd.DataFrame(rows[name]), n_boot=n_boot)
        out[name] = {k: summary[k] for k in BASELINE_KEYS}
    return out


def baseline_scores(split: str, dataset_dir=None, *, splits_dir=None, n_boot: int = 2000) -> dict[str, dict]:
    """all-background, all-foreground and mean-mask prior, scored at mask resolution on `split`.

    name -> {mean_iou, median_iou, pooled_iou, mean_dice, mean_boundary_iou, mean_iou_ci95}.
    """
    items = split_items(split, dataset_dir, splits_dir)
    masks = [_binary_mask(Path(p)) for p in items["mask_path"]]
    if not masks:
        raise SeglibError(f"split {split!r} has no images")
    return _baseline_summaries(masks, mean_mask_prior(dataset_dir, splits_dir), n_boot)


# --------------------------------------------------------------------------------------------- evaluation


def _resolve_target(run_or_dir, checkpoint, out_dir) -> tuple[Path | None, Path, str]:
    """(checkpoint path or None, eval folder, run name) for a run (name, Path or Run) or a loose checkpoint."""
    if run_or_dir is not None and checkpoint is not None:
        raise SeglibError("give a run or a checkpoint, not both")
    if checkpoint is not None:
        if out_dir is None:
            raise SeglibError("a checkpoint outside runs/ needs an output folder (out_dir= / --out DIR)")
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise SeglibError(f"{checkpoint}: checkpoint not found")
        return checkpoint, Path(out_dir), ""
    if run_or_dir is None:
        raise SeglibError("nothing to evaluate: give a run (--run NAME) or a checkpoint (--checkpoint PATH)")
    run = Run.resolve(run_or_dir)
    best = run.require("best")
    return best, Path(out_dir) if out_dir is not None else run.eval_root, run.name


def _checkpoint_facts(predictor, checkpoint_path: Path | None, run_name: str) -> dict:
    state = getattr(predictor, "checkpoint", None) or {}
    cfg = state.get("config") or {}
    source = checkpoint_path if checkpoint_path is not None else getattr(predictor, "source", "")
    source = display_path(source) if source else ""
    return {
        "checkpoint": source,
        "checkpoint_epoch": state.get("epoch"),
        "checkpoint_val_iou": state.get("val_iou"),  # training-time val IoU (letterboxed size, t=0.5)
        "weights": state.get("weights", ""),
        "run": run_name,
        "profile": cfg.get("profile", ""),
        "model": cfg.get("model", ""),
        "input_size": state.get("input_size"),
    }


def _same_model(metrics: dict, facts: dict, tta: bool) -> bool:
    return (metrics.get("checkpoint") == facts["checkpoint"]
            and metrics.get("checkpoint_epoch") == facts["checkpoint_epoch"]
            and bool(metrics.get("tta")) == bool(tta))


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_run(run_or_dir=None, split: str = "test", *, checkpoint=None, out_dir=None, dataset_dir=None,
                 splits_dir=None, tta: bool = False, overwrite: bool = False, progress: bool = True,
                 n_boot: int = 2000, threshold_source: str = "val", predictor=None, device: str | None = None,
                 batch_size: int = 8, log=print) -> EvalResult:
    """Score a run's best.pt (or a `checkpoint` with `out_dir`) on val or test at mask resolution.

    val: sweeps thresholds, picks the best mean IoU (ties -> closest to 0.5), writes threshold_sweep.csv.
    test: uses the val threshold from `<eval>/val/metrics.json` (evaluating val first when that file is missing
    or belongs to another checkpoint / TTA setting); refuses to re-score an existing `<eval>/test` unless
    `overwrite`. `threshold_source="checkpoint"` uses the checkpoint's training threshold instead of the sweep.
    `predictor` replaces loading one from the checkpoint (an in-memory model; needs `out_dir`).
    """
    t0 = time.perf_counter()
    if split not in SPLITS:
        raise SeglibError(f"split {split!r}: evaluate scores {' or '.join(SPLITS)} (train is what the model saw)")
    if threshold_source not in ("val", "checkpoint"):
        raise SeglibError(f"threshold_source {threshold_source!r}: expected 'val' or 'checkpoint'")
    if predictor is not None and checkpoint is None and run_or_dir is None:
        if out_dir is None:
            raise SeglibError("an in-memory predictor needs an output folder (out_dir=)")
        ckpt_path, eval_dir, run_name = None, Path(out_dir), ""
    else:
        ckpt_path, eval_dir, run_name = _resolve_target(run_or_dir, checkpoint, out_dir)
    split_dir = eval_dir / split
    if split == "test" and not overwrite and ((split_dir / "metrics.json").exists()
                                              or (split_dir / "per_image.csv").exists()):
        raise SeglibError(f"{split_dir}: test is already scored (test is scored once per run); "
                          "pass overwrite=True / --overwrite to score it again")
    check_writable_dir(split_dir)  # created with the first result file: a failed evaluation leaves no folder
    if predictor is None:
        from seglib.predict import Predictor

        predictor = Predictor.from_checkpoint(ckpt_path, device=device or _default_device(), tta=tta)
    else:  # an in-memory predictor keeps its own TTA flag unless tta=True asks for it
        if tta:
            predictor.tta = True
        tta = bool(getattr(predictor, "tta", False))
    facts = _checkpoint_facts(predictor, ckpt_path, run_name)
    split_warnings = check_scored_split((getattr(predictor, "checkpoint", None) or {}).get("data_split"), split,
                                        split_items(split, dataset_dir, splits_dir)["id"].astype(str).tolist(),
                                        splits_dir)
    for line in split_warnings:
        log(f"warning: {split}: {line}")

    # threshold
    val_result = None
    sweep = None
    threshold_from = ""
    if threshold_source == "checkpoint":
        threshold = float(predictor.checkpoint["threshold"]) if getattr(predictor, "checkpoint", None) \
            else float(predictor.threshold)
        source = "checkpoint"
    elif split == "val":
        threshold, source = None, "val sweep"
    else:
        val_json = eval_dir / "val" / "metrics.json"
        val_metrics = json.loads(val_json.read_text()) if val_json.is_file() else None
        if val_metrics is not None and val_metrics.get("threshold_source") == "val sweep" \
                and _same_model(val_metrics, facts, tta):
            threshold = float(val_metrics["threshold"])
        else:
            why = "not found" if val_metrics is None else "is for another checkpoint, TTA setting or threshold source"
            log(f"{val_json} {why}: evaluating val first to choose the threshold")
            val_result = evaluate_run(run_or_dir, "val", checkpoint=checkpoint, out_dir=out_dir,
                                      dataset_dir=dataset_dir, splits_dir=splits_dir, tta=tta, progress=progress,
                                      n_boot=n_boot, predictor=predictor, batch_size=batch_size, log=log)
            threshold = val_result.threshold
        source, threshold_from = "val sweep", display_path(val_json)

    # the model, once
    records = collect_probabilities(predictor, split, dataset_dir, splits_dir, batch_size=batch_size,
                                    progress=progress)
    if not records:
        raise SeglibError(f"split {split!r} has no images")
    if split == "val":
        sweep = threshold_sweep(records)
        if threshold is None:
            threshold = choose_threshold(sweep)
    per_image = score_records(records, threshold)
    summary = summarise(per_image, n_boot=n_boot)
    baselines = _baseline_summaries([r["mask"] for r in records], mean_mask_prior(dataset_dir, splits_dir), n_boot)
    ids = ",".join(per_image["id"])

    metrics = {
        "split": split,
        "n_images": summary["n_images"],
        "threshold": float(threshold),
        "threshold_source": source,
        **({"threshold_from": threshold_from} if threshold_from else {}),
        **({"thresholds_swept": list(SWEEP_THRESHOLDS)} if sweep is not None else {}),
        **{k: v for k, v in summary.items() if k != "n_images"},
        "n_boot": n_boot,
        **facts,
        "scored_at": SCORED_AT,
        "tta": bool(tta),
        "seglib_version": seglib.__version__,
        "baselines": baselines,
        "baseline_notes": {
            "all-background": "predicts no person anywhere",
            "all-foreground": "predicts person everywhere (IoU = the true foreground fraction)",
            "mean-mask prior": f"average of the train split's masks letterboxed to {PRIOR_SIZE}x{PRIOR_SIZE}, "
                               "thresholded at 0.5, un-letterboxed to each image",
        },
        "split_checked": bool((getattr(predictor, "checkpoint", None) or {}).get("data_split")),
        "split_warnings": split_warnings,
        "dataset_dir": _dataset_dir_text(dataset_dir),
        "splits_dir": display_path(Path(splits_dir) if splits_dir is not None else config.splits_dir()),
        "image_ids_sha1": hashlib.sha1(ids.encode()).hexdigest()[:12],
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 2),
    }

    paths = [split_dir / "per_image.csv"]
    write_text_atomic(paths[0], per_image.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    if sweep is not None:
        paths.append(split_dir / "threshold_sweep.csv")
        write_text_atomic(paths[-1], sweep.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    paths.append(split_dir / "metrics.json")
    write_json_atomic(paths[-1], metrics)
    return EvalResult(split, split_dir, metrics, per_image, sweep, paths, val_result)


def _dataset_dir_text(dataset_dir) -> str:
    from seglib.data.catalog import find_dataset_dir

    return display_path(find_dataset_dir(dataset_dir))


# --------------------------------------------------------------------------------------------- tables


def load_metrics(run_or_dir, split: str = "test") -> dict:
    """metrics.json of a run name, run folder, or eval folder (one that holds <split>/metrics.json)."""
    path = Path(run_or_dir) if isinstance(run_or_dir, Path) else Run.resolve(run_or_dir).dir
    candidates = [path / "eval" / split / "metrics.json", path / split / "metrics.json", path / "metrics.json"]
    for c in candidates:
        if c.is_file():
            return json.loads(c.read_text())
    raise SeglibError(f"{candidates[0]}: not evaluated yet (run `seglib evaluate --run {path.name} --split {split}`)")


def headline_from_metrics(metrics: dict) -> pd.DataFrame:
    def row(d: dict) -> dict:
        low, high = d["mean_iou_ci95"]
        return {"mean_iou": d["mean_iou"], "ci95_low": low, "ci95_high": high, "median_iou": d["median_iou"],
                "pooled_iou": d["pooled_iou"], "mean_dice": d["mean_dice"],
                "mean_boundary_iou": d["mean_boundary_iou"]}

    rows = {"model": row(metrics)}
    for name, scores in metrics.get("baselines", {}).items():
        rows[name] = row(scores)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=HEADLINE_COLUMNS)
    table.index.name = "method"
    return table


def headline_table(run_dir, split: str = "test") -> pd.DataFrame:
    """Rows: model + baselines; columns mean_iou, ci95_low, ci95_high, median_iou, pooled_iou, mean_dice,
    mean_boundary_iou. Reads `<run>/eval/<split>/metrics.json` (a run name, run folder or eval folder)."""
    return headline_from_metrics(load_metrics(run_dir, split))


def format_table(table: pd.DataFrame) -> str:
    lines = [f"{'':18s} {'mean IoU':>8s} {'95% CI':>15s} {'median':>7s} {'pooled':>7s} {'Dice':>6s} "
             f"{'bIoU':>6s}"]
    for name, r in table.iterrows():
        lines.append(f"{name:18s} {r.mean_iou:8.4f} [{r.ci95_low:.3f}, {r.ci95_high:.3f}] {r.median_iou:7.4f} "
                     f"{r.pooled_iou:7.4f} {r.mean_dice:6.4f} {r.mean_boundary_iou:6.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI


# ------------------------------------------------------------------------------ reusing saved evaluations


def _when(metrics: dict) -> str:
    stamp = metrics.get("evaluated_at", "")
    try:
        return _dt.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return stamp or "an unknown date"


def saved_result(run_dir, split: str):
    """The evaluation saved in `<run_dir>/eval/<split>/` as an EvalResult, or None when it is not complete
    (metrics.json is written last)."""
    folder = Path(run_dir) / "eval" / split
    if not (folder / "metrics.json").is_file():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    per_image = pd.read_csv(folder / "per_image.csv", dtype={"id": str})
    sweep_path = folder / "threshold_sweep.csv"
    sweep = pd.read_csv(sweep_path) if sweep_path.is_file() else None
    return EvalResult(split, folder, metrics, per_image, sweep,
                      [p for p in (folder / "per_image.csv", sweep_path, folder / "metrics.json") if p.is_file()])


def _checkpoint_epoch(path: Path):
    from seglib.checkpoint import load_checkpoint

    return load_checkpoint(path).get("epoch")


def load_or_evaluate(run_dir, split: str, *, dataset_dir=None, splits_dir=None, tta: bool | None = False,
                     rescore: bool = False, progress: bool = False, n_boot: int = 2000,
                     log: Callable[[str], None] = print):
    """The run's evaluation on `split`, reused when possible, and a line saying which it is.

    val: reused when `eval/val/metrics.json` was made from the current best.pt (same epoch) with the same TTA
    setting, otherwise evaluated again. test: an existing score is always reused (test is scored once per run)
    unless `rescore`; a warning is added when it belongs to another checkpoint. `tta=None` takes the saved
    evaluation's TTA setting (none when there is no saved one). A run without best.pt is a SeglibError telling
    how to train it.
    """
    run = Run.resolve(run_dir)
    run_dir = run.dir
    best = run.require("best")
    epoch = _checkpoint_epoch(best)
    saved = saved_result(run_dir, split)
    if tta is None:
        tta = bool(saved.metrics.get("tta")) if saved is not None else False
    kind = f"best.pt, epoch {epoch}" + (", TTA" if tta else "")
    if split == "test":
        if saved is not None and not rescore:
            line = (f"test was already scored for this run on {_when(saved.metrics)}; showing those results "
                    "(test is scored once per run; rescore=True scores it again).")
            if not same_checkpoint(saved.metrics, epoch, tta):
                line += (f" Note: they were scored with epoch {saved.metrics.get('checkpoint_epoch')}"
                         f"{' with TTA' if saved.metrics.get('tta') else ''}, not the current {kind}.")
            log(line)
            return saved
        if saved is None and (run_dir / "eval" / "test" / "per_image.csv").exists() and not rescore:
            raise SeglibError(f"{run_dir / 'eval' / 'test'}: an earlier test scoring did not finish "
                              "(per_image.csv without metrics.json); pass rescore=True to score test again")
        log(f"rescore=True: scoring test again ({kind}), replacing the results of {_when(saved.metrics)}."
            if saved is not None else f"test: not scored yet; scoring it now ({kind}) with the threshold chosen "
                                      "on val.")
        return evaluate_run(run_dir, "test", dataset_dir=dataset_dir, splits_dir=splits_dir, tta=tta,
                            overwrite=rescore, progress=progress, n_boot=n_boot, log=log)
    if saved is not None and same_checkpoint(saved.metrics, epoch, tta) \
            and saved.metrics.get("threshold_source") == "val sweep":
        log(f"{split}: reusing the evaluation of {_when(saved.metrics)} (same checkpoint: {kind}; "
            f"threshold {saved.metrics['threshold']:g}).")
        return saved
    why = "not evaluated yet" if saved is None else \
        "the saved evaluation is for another checkpoint, TTA setting or threshold source"
    log(f"{split}: {why}; evaluating now ({kind}).")
    return evaluate_run(run_dir, split, dataset_dir=dataset_dir, splits_dir=splits_dir, tta=tta, progress=progress,
                        n_boot=n_boot, log=log)


def add_parser(subparsers) -> None:
    """Register `seglib evaluate`."""
    p = subparsers.add_parser("evaluate", help="score a run on val or test at mask resolution, with baselines")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="run name (runs/NAME/best.pt; results in runs/NAME/eval/<split>/)")
    target.add_argument("--checkpoint", type=Path, help="a checkpoint outside runs/ (needs --out)")
    p.add_argument("--out", type=Path, help="folder for the results (<out>/<split>/); required with --checkpoint")
    p.add_argument("--split", choices=SPLITS, default="test", help="val (chooses the threshold) or test (default)")
    p.add_argument("--tta", action="store_true", help="average with a horizontally flipped prediction")
    p.add_argument("--overwrite", action="store_true", help="score test again although it is already scored")
    p.add_argument("--threshold-from", choices=("val", "checkpoint"), default="val",
                   help="val: sweep on val (default); checkpoint: the training threshold")
    p.add_argument("--data-dir", type=Path, help="data set folder (default: $SEGLIB_DATA_DIR or data/raw)")
    p.add_argument("--splits-dir", type=Path, help="folder with train/val/test CSVs (default: data/splits)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    if args.checkpoint is not None and args.out is None:
        raise SeglibError("--checkpoint needs --out DIR (where the results go)")
    result = evaluate_run(args.run, args.split, checkpoint=args.checkpoint, out_dir=args.out,
                          dataset_dir=args.data_dir, splits_dir=args.splits_dir, tta=args.tta,
                          overwrite=args.overwrite, progress=not args.quiet, threshold_source=args.threshold_from)
    m = result.metrics
    print(f"{m['split']}: {m['n_images']} images scored at {m['scored_at']}, threshold {m['threshold']:.2f} "
          f"({m['threshold_source']}){', TTA' if m['tta'] else ''}")
    print(format_table(result.table()))
    for r in ([result.val_result] if result.val_result else []) + [result]:
        for path in r.paths:
            print(f"wrote {path}")
    return 0
