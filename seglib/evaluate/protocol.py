"""The evaluation protocol: val chooses the threshold, test (and external sets) are scored once with it."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from pathlib import Path

import seglib
from seglib import config
from seglib.config import display_path
from seglib.data.external import PairSet
from seglib.data.snapshot import SplitSnapshot, snapshot_splits
from seglib.data.splits import check_scored_split
from seglib.devices import resolve_device
from seglib.errors import SeglibError
from seglib.evaluate.baselines import PRIOR_SIZE, _baseline_summaries, mean_mask_prior
from seglib.evaluate.records import SPLITS, collect_probabilities, split_items
from seglib.evaluate.scoring import (
    SCORED_AT,
    SWEEP_THRESHOLDS,
    choose_threshold,
    score_records,
    threshold_sweep,
)
from seglib.evaluate.tables import EvalResult
from seglib.io import check_writable_dir, write_json_atomic, write_text_atomic
from seglib.metrics import summarise
from seglib.runs import METRICS, PER_IMAGE, SWEEP, Run, same_checkpoint


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


def _checkpoint_facts(facts: dict, source: str, checkpoint_path: Path | None, run_name: str) -> dict:
    # a file is named relative to the project; another source (e.g. "mediapipe==0.10.21 ...") as it says itself
    source = display_path(checkpoint_path) if checkpoint_path is not None else source
    return {
        "checkpoint": source,
        "checkpoint_epoch": facts.get("epoch"),
        "checkpoint_val_iou": facts.get("val_iou"),  # training-time val IoU (letterboxed size, t=0.5)
        "weights": facts.get("weights", ""),
        "run": run_name,
        "profile": facts.get("profile", ""),
        "model": facts.get("model", ""),
        "input_size": facts.get("input_size"),
    }


def _same_model(metrics: dict, facts: dict, tta: bool) -> bool:
    """The run rule (`runs.same_checkpoint`: file, epoch, TTA) and, for a loose checkpoint, the same path."""
    return metrics.get("checkpoint") == facts["checkpoint"] and same_checkpoint(
        metrics, facts["checkpoint_epoch"], tta, Path(facts["checkpoint"]).name)


def evaluate_run(run_or_dir=None, split: str = "test", *, checkpoint=None, out_dir=None, dataset_dir=None,
                 splits_dir=None, tta: bool = False, overwrite: bool = False, progress: bool = True,
                 n_boot: int = 2000, threshold_source: str = "val", predictor=None, device: str | None = None,
                 batch_size: int = 8, pairs: PairSet | None = None, snapshot: SplitSnapshot | None = None,
                 log=print) -> EvalResult:
    """Score a run's best.pt (or a `checkpoint` with `out_dir`) on val or test at mask resolution.

    val: sweeps thresholds, picks the best mean IoU (ties -> closest to 0.5), writes threshold_sweep.csv.
    test: uses the val threshold from `<eval>/val/metrics.json` (evaluating val first when that file is missing
    or belongs to another checkpoint / TTA setting); refuses to re-score an existing `<eval>/test` unless
    `overwrite`. `threshold_source="checkpoint"` uses the checkpoint's training threshold instead of the sweep.
    `predictor` replaces loading one from the checkpoint (an in-memory model; needs `out_dir`).
    `pairs`: an external labelled set (`seglib.data.external`) scored like test (val's threshold, scored once),
    its results under `<eval>/<pairs.name>/`; it is for measuring generalisation only.
    `snapshot`: the splits folder as already read (`data.snapshot`); read here when None. Every table of the
    evaluation comes from that one version, and a split rewritten before the results are written is refused.
    """
    t0 = time.perf_counter()
    if pairs is not None:
        split = pairs.name
        if split in (*SPLITS, "train"):
            raise SeglibError(f"external set name {split!r} clashes with a split of the data set")
    elif split not in SPLITS:
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
    scored_once = split == "test" or pairs is not None
    if scored_once and not overwrite and ((split_dir / METRICS).exists() or (split_dir / PER_IMAGE).exists()):
        raise SeglibError(f"{display_path(split_dir)}: {split} is already scored ({split} is scored once per run); "
                          "score it again with --overwrite (in Python: overwrite=True)")
    check_writable_dir(split_dir)  # created with the first result file: a failed evaluation leaves no folder
    if predictor is None:
        from seglib.predict import Predictor

        predictor = Predictor.from_checkpoint(ckpt_path, device=resolve_device(device or "auto"), tta=tta)
    else:  # an in-memory predictor keeps its own TTA flag unless tta=True asks for it
        if tta:
            predictor.tta = True
        tta = bool(predictor.tta)
    model_facts = predictor.facts()
    facts = _checkpoint_facts(model_facts, str(predictor.source), ckpt_path, run_name)
    trained_on = model_facts.get("data_split")
    snapshot = snapshot if snapshot is not None else snapshot_splits(splits_dir)
    items = None if pairs is not None else split_items(split, dataset_dir, snapshot=snapshot)
    split_warnings = [] if pairs is not None else check_scored_split(
        trained_on, split, items["id"].astype(str).tolist(), splits_dir)
    for line in split_warnings:
        log(f"warning: {split}: {line}")

    # threshold
    val_result = None
    sweep = None
    threshold_from = ""
    if threshold_source == "checkpoint":
        threshold = float(model_facts.get("threshold", predictor.threshold))
        source = "checkpoint"
    elif split == "val":
        threshold, source = None, "val sweep"
    else:
        val_json = eval_dir / "val" / METRICS
        val_metrics = json.loads(val_json.read_text()) if val_json.is_file() else None
        if val_metrics is not None and val_metrics.get("threshold_source") == "val sweep" \
                and _same_model(val_metrics, facts, tta):
            threshold = float(val_metrics["threshold"])
        else:
            why = "not found" if val_metrics is None else "is for another checkpoint, TTA setting or threshold source"
            log(f"{val_json} {why}: evaluating val first to choose the threshold")
            val_result = evaluate_run(run_or_dir, "val", checkpoint=checkpoint, out_dir=out_dir,
                                      dataset_dir=dataset_dir, splits_dir=splits_dir, tta=tta, progress=progress,
                                      n_boot=n_boot, predictor=predictor, batch_size=batch_size,
                                      snapshot=snapshot, log=log)
            threshold = val_result.threshold
        source, threshold_from = "val sweep", display_path(val_json)

    # the model, once
    records = collect_probabilities(predictor, split, dataset_dir, splits_dir, batch_size=batch_size,
                                    progress=progress, pairs=pairs, items=items)
    if not records:
        raise SeglibError(f"split {split!r} has no images")
    if split == "val":
        sweep = threshold_sweep(records)
        if threshold is None:
            threshold = choose_threshold(sweep)
    per_image = score_records(records, threshold)
    summary = summarise(per_image, n_boot=n_boot)
    baselines = _baseline_summaries([r["mask"] for r in records], mean_mask_prior(dataset_dir, snapshot=snapshot),
                                    n_boot)
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
        **({"external_set": {"name": pairs.name, "source": pairs.source, "mask_rule": pairs.mask_rule,
                             "n_pairs": len(pairs.items), "content_sha1": pairs.content_sha1,
                             "registered": pairs.registered}} if pairs is not None else {}),
        "split_checked": bool(trained_on),
        "split_warnings": split_warnings,
        "dataset_dir": _dataset_dir_text(dataset_dir) if pairs is None else display_path(
            os.path.commonpath([str(Path(p).parent) for p in pairs.items["image_path"]])),
        "splits_dir": display_path(Path(splits_dir) if splits_dir is not None else config.splits_dir()),
        "splits_sha1": snapshot.sha1(),  # the split files' bytes as read once for this evaluation
        "image_ids_sha1": hashlib.sha1(ids.encode()).hexdigest()[:12],
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 2),
    }

    # a split rewritten while this ran (`data split --overwrite`) is refused, not recorded as checked
    snapshot.check_unchanged(f"{split} was being scored")
    paths = [split_dir / PER_IMAGE]
    write_text_atomic(paths[0], per_image.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    if sweep is not None:
        paths.append(split_dir / SWEEP)
        write_text_atomic(paths[-1], sweep.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    paths.append(split_dir / METRICS)
    write_json_atomic(paths[-1], metrics)
    return EvalResult(split, split_dir, metrics, per_image, sweep, paths, val_result)


def _dataset_dir_text(dataset_dir) -> str:
    from seglib.data.catalog import find_dataset_dir

    return display_path(find_dataset_dir(dataset_dir))
