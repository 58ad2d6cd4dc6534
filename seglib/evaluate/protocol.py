"""The evaluation protocol: val chooses the threshold, test (and external sets) are scored once with it."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import seglib
from seglib.data.descriptions import BUILTIN
from seglib.data.external import PairSet
from seglib.data.selection import check_not_trained_on, check_test_by_content, open_sets, trained_sets
from seglib.data.snapshot import SplitSnapshot
from seglib.data.splits import check_scored_split
from seglib.evaluate.baselines import PRIOR_SIZE, baseline_summaries, mean_mask_prior
from seglib.evaluate.options import EvalOptions
from seglib.evaluate.records import SPLITS, collect_probabilities, split_items
from seglib.evaluate.scoring import (
    SCORED_AT,
    SWEEP_THRESHOLDS,
    choose_threshold,
    score_records,
    threshold_sweep,
)
from seglib.evaluate.tables import EvalResult
from seglib.infra.devices import resolve_device
from seglib.infra.errors import SeglibError
from seglib.infra.io import check_writable_dir, write_json_atomic, write_text_atomic
from seglib.infra.paths import display_path
from seglib.metrics import summarise
from seglib.predict.levers import InferenceOptions, lever_folder
from seglib.runs import METRICS, PER_IMAGE, SWEEP, Run, same_checkpoint

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


def _target(run_or_dir, checkpoint, out_dir, predictor) -> tuple[Path | None, Path, str]:
    """(checkpoint path or None, eval folder, run name) for a run (name, Path or Run), a loose checkpoint or an
    in-memory predictor (both need `out_dir`)."""
    if predictor is not None and checkpoint is None and run_or_dir is None:
        if out_dir is None:
            raise SeglibError("an in-memory predictor needs an output folder (out_dir=)")
        return None, Path(out_dir), ""
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
        "trained_on": trained_sets(facts.get("data_split")),  # the registered sets whose photos trained it
    }


def _same_model(metrics: dict, facts: dict, opts: EvalOptions) -> bool:
    """The run rule (`runs.same_checkpoint`: file, epoch, TTA), the same levers and boundary refinement and, for a
    loose checkpoint, the same path."""
    try:
        levers = InferenceOptions.from_record(metrics)
    except SeglibError:
        return False
    return metrics.get("checkpoint") == facts["checkpoint"] and levers == opts.inference and \
        same_checkpoint(metrics, facts["checkpoint_epoch"], opts.tta, Path(facts["checkpoint"]).name)


def evaluate_run(run_or_dir=None, split: str | PairSet = "test", *, checkpoint=None, out_dir=None, dataset_dir=None,
                 splits_dir=None, predictor=None, options: EvalOptions | None = None) -> EvalResult:
    """Score a run's best checkpoint (or a `checkpoint` with `out_dir`) on val or test at mask resolution.

    val: sweeps thresholds, picks the best mean IoU (ties -> closest to 0.5), writes threshold_sweep.csv.
    test: uses the val threshold from `<eval>/val/metrics.json` (evaluating val first when that file is missing
    or belongs to another checkpoint / TTA setting); refuses to re-score an existing `<eval>/test` unless
    `overwrite`. `threshold_source="checkpoint"` uses the checkpoint's training threshold instead of the sweep.
    `predictor` replaces loading one from the checkpoint (an in-memory model; needs `out_dir`).
    `split` may be an external labelled set instead (a `seglib.data.external.PairSet`), scored like test (val's
    threshold, scored once), its results under `<eval>/<its name>/`; it is for measuring generalisation only.
    The split files are read once: every table of the evaluation comes from that one version, and a split
    rewritten before the results are written is refused.
    `options`: an `EvalOptions` (tta, overwrite, progress, n_boot, threshold_source, device, batch_size, refine,
    and the levers scales, max_upscale, second_look; `evaluate_run(run, "val", options=EvalOptions(n_boot=200))`).
    With levers the results go to `<eval>/@<levers>/<split>/` (`seglib.predict.levers.lever_folder`), test's
    threshold chosen on val with the same levers; an in-memory predictor's own levers count when none are asked.
    """
    t0 = time.perf_counter()
    # 1. what is scored and where: a split or external set, the options, the target and a folder it may write
    pairs = split if isinstance(split, PairSet) else None
    split = _scored_name(split, pairs)
    opts = _own_levers(options or EvalOptions(), predictor)
    ckpt_path, eval_dir, run_name = _target(run_or_dir, checkpoint, out_dir, predictor)
    eval_dir = lever_folder(eval_dir, opts.inference)  # levers: apart from the plain evaluation's files
    split_dir = _output_dir(eval_dir, split, once=split == "test" or pairs is not None, overwrite=opts.overwrite)
    # 2. the model, loaded once (val uses it too when it is scored first for the threshold)
    predictor, opts = _load_predictor(predictor, ckpt_path, opts)
    facts = predictor.facts()
    job = _Job(predictor, facts, ckpt_path, run_name, opts, eval_dir, dataset_dir, splits_dir,
               _own_splits(facts, dataset_dir, splits_dir))
    # 3. the split's images, checked against the split the model was trained on (none for an external set)
    items, split_warnings = _checked_items(job, split, pairs)
    # 4. the threshold: the checkpoint's, val's (scoring val first when it is not saved for this model) or, on
    #    val, the sweep's own choice (made in step 5)
    threshold, val_result = _threshold(job, split)
    # 5. the model over the images once; scores at mask resolution, the sweep on val, the baselines
    scores = _score(job, split, _collect(job, split, items, pairs), threshold)
    # 6. the metrics record
    metrics = _metrics_record(job, split, scores, threshold, split_warnings, pairs, t0)
    # 7. the results, metrics.json last; a split rewritten meanwhile is refused and nothing is written
    return _write_results(job, split, split_dir, scores, metrics, val_result)


@dataclass(frozen=True)
class _Job:
    """What every step of one evaluation shares (val, when scored first for test's threshold, shares it too)."""

    predictor: object
    model_facts: dict
    checkpoint: Path | None
    run_name: str
    options: EvalOptions
    eval_dir: Path
    dataset_dir: object
    splits_dir: object
    snapshot: SplitSnapshot

    @property
    def facts(self) -> dict:
        return _checkpoint_facts(self.model_facts, str(self.predictor.source), self.checkpoint, self.run_name)


class _Threshold(NamedTuple):
    value: float | None  # None on val: the sweep chooses it
    source: str  # "val sweep" or "checkpoint"
    came_from: str = ""  # the val metrics.json it was read from (test and external sets)


class _Scores(NamedTuple):
    threshold: float
    sweep: pd.DataFrame | None
    per_image: pd.DataFrame
    summary: dict
    baselines: dict


def _own_splits(facts: dict, dataset_dir, splits_dir):
    """The split files of the sets the model trained on (its checkpoint's record; the built-in set before
    records named sets), read once."""
    return open_sets(",".join(trained_sets(facts.get("data_split"))), dataset_dir=dataset_dir, splits_dir=splits_dir)


def _scored_name(split: str, pairs: PairSet | None) -> str:
    """The split scored (val or test), or the external set's name, which may not be a split's."""
    if pairs is not None:
        if pairs.name in (*SPLITS, "train"):
            raise SeglibError(f"external set name {pairs.name!r} clashes with a split of the data set")
        return pairs.name
    if split not in SPLITS:
        raise SeglibError(f"split {split!r}: evaluate scores {' or '.join(SPLITS)} (train is what the model saw)")
    return split


def _output_dir(eval_dir: Path, split: str, *, once: bool, overwrite: bool) -> Path:
    """`<eval>/<split>`, refused when a split scored once is already scored (unless `overwrite`) or when it
    cannot be written; created with the first result file, so a failed evaluation leaves no folder."""
    split_dir = eval_dir / split
    if once and not overwrite and ((split_dir / METRICS).exists() or (split_dir / PER_IMAGE).exists()):
        raise SeglibError(f"{display_path(split_dir)}: {split} is already scored ({split} is scored once per run); "
                          "score it again with --overwrite (in Python: overwrite=True)")
    check_writable_dir(split_dir)
    return split_dir


def _load_predictor(predictor, ckpt_path: Path | None, opts: EvalOptions):
    """(predictor, options with its actual TTA setting): loaded from the checkpoint unless given; an in-memory
    predictor keeps its own TTA flag unless tta=True asks for it."""
    if predictor is None:
        from seglib.predict import Predictor

        return Predictor.from_checkpoint(ckpt_path, device=resolve_device(opts.device or "auto"),
                                         tta=opts.tta, inference=opts.inference), opts
    if opts.tta:
        predictor.tta = True
    if opts.refine:
        if not hasattr(predictor, "refine"):
            raise SeglibError(f"{getattr(predictor, 'source', 'this model')}: cannot refine boundaries (only "
                              "seglib's own models can)")
        predictor.refine = True
    if opts.inference.active:
        if not hasattr(predictor, "inference"):
            raise SeglibError(f"{getattr(predictor, 'source', 'this model')}: cannot predict with levers "
                              f"({opts.inference.tag()}; only seglib's own models can)")
        predictor.inference = opts.inference
    return predictor, replace(opts, tta=bool(predictor.tta))


def _own_levers(opts: EvalOptions, predictor) -> EvalOptions:
    """The options with an in-memory predictor's own levers when the options ask for none (as they are recorded
    and where the results go)."""
    own = getattr(predictor, "inference", None)
    if opts.inference.active or not isinstance(own, InferenceOptions) or not own.active:
        return opts
    return replace(opts, scales=own.scales, max_upscale=own.max_upscale, second_look=own.second_look,
                   refine=own.refine)


def _checked_items(job: _Job, split: str, pairs: PairSet | None):
    """(the split's items from the snapshot, the split check's warnings, logged); (None, []) for an external set."""
    if pairs is not None:
        check_not_trained_on(job.model_facts.get("data_split"), pairs)
        return None, []
    items = split_items(split, job.dataset_dir, snapshot=job.snapshot)
    split_warnings = check_scored_split(job.model_facts.get("data_split"), split, items["id"].astype(str).tolist(),
                                        job.splits_dir)
    if split == "test":  # by the photos' bytes too: a copy of a training photo under another id or set
        check_test_by_content(job.model_facts.get("data_split"), items, f"{display_path(job.snapshot.folder)}/test.csv")
    for line in split_warnings:
        logger.info(f"warning: {split}: {line}")
    return items, split_warnings


def _threshold(job: _Job, split: str) -> tuple[_Threshold, EvalResult | None]:
    """(the threshold to score with, val's result when val had to be scored first to choose it)."""
    if job.options.threshold_source == "checkpoint":
        return _Threshold(float(job.model_facts.get("threshold", job.predictor.threshold)), "checkpoint"), None
    if split == "val":
        return _Threshold(None, "val sweep"), None
    val_json = job.eval_dir / "val" / METRICS
    val_metrics = json.loads(val_json.read_text()) if val_json.is_file() else None
    if val_metrics is not None and val_metrics.get("threshold_source") == "val sweep" \
            and _same_model(val_metrics, job.facts, job.options):
        return _Threshold(float(val_metrics["threshold"]), "val sweep", display_path(val_json)), None
    why = "not found" if val_metrics is None else ("is for another checkpoint, TTA setting, levers, boundary refinement "
                                                   "or threshold source")
    logger.info(f"{val_json} {why}: evaluating val first to choose the threshold")
    val_result = _score_val_first(job)
    return _Threshold(val_result.threshold, "val sweep", display_path(val_json)), val_result


def _score_val_first(job: _Job) -> EvalResult:
    """Steps 1 and 3-7 of `evaluate_run` on val, with test's model, options and split snapshot: val's own sweep
    chooses the threshold that test is then scored with."""
    t0 = time.perf_counter()
    split_dir = _output_dir(job.eval_dir, "val", once=False, overwrite=False)
    items, split_warnings = _checked_items(job, "val", None)
    threshold = _Threshold(None, "val sweep")
    scores = _score(job, "val", _collect(job, "val", items, None), threshold)
    metrics = _metrics_record(job, "val", scores, threshold, split_warnings, None, t0)
    return _write_results(job, "val", split_dir, scores, metrics, None)


def _collect(job: _Job, split: str, items, pairs: PairSet | None) -> list[dict]:
    records = collect_probabilities(job.predictor, split if pairs is None else pairs, job.dataset_dir, job.splits_dir,
                                    batch_size=job.options.batch_size, progress=job.options.progress, items=items)
    if not records:
        raise SeglibError(f"split {split!r} has no images")
    return records


def _score(job: _Job, split: str, records: list[dict], threshold: _Threshold) -> _Scores:
    """Per-image scores at `threshold` (on val, the sweep and, when none is given, the threshold it chooses),
    their summary and the baselines on the same images."""
    sweep = threshold_sweep(records) if split == "val" else None
    value = threshold.value if threshold.value is not None else choose_threshold(sweep)
    per_image = score_records(records, value)
    n_boot = job.options.n_boot
    baselines = baseline_summaries([r["mask"] for r in records],
                                    mean_mask_prior(job.dataset_dir, snapshot=job.snapshot), n_boot)
    return _Scores(value, sweep, per_image, summarise(per_image, n_boot=n_boot), baselines)


def _metrics_record(job: _Job, split: str, scores: _Scores, threshold: _Threshold, split_warnings: list,
                    pairs: PairSet | None, t0: float) -> dict:
    """metrics.json: the scores, how they were made (threshold, model, data, split files) and when."""
    summary, ids = scores.summary, ",".join(scores.per_image["id"])
    return {
        "split": split,
        "n_images": summary["n_images"],
        "threshold": float(scores.threshold),
        "threshold_source": threshold.source,
        **({"threshold_from": threshold.came_from} if threshold.came_from else {}),
        **({"thresholds_swept": list(SWEEP_THRESHOLDS)} if scores.sweep is not None else {}),
        **{k: v for k, v in summary.items() if k != "n_images"},
        "n_boot": job.options.n_boot,
        **job.facts,
        "scored_at": SCORED_AT,
        "tta": bool(job.options.tta),
        "refine": bool(job.options.refine),
        **({"inference": job.options.inference.record()} if job.options.inference.active else {}),
        "seglib_version": seglib.__version__,
        "baselines": scores.baselines,
        "baseline_notes": {
            "all-background": "predicts no person anywhere",
            "all-foreground": "predicts person everywhere (IoU = the true foreground fraction)",
            "mean-mask prior": f"average of the train split's masks letterboxed to {PRIOR_SIZE}x{PRIOR_SIZE}, "
                               "thresholded at 0.5, un-letterboxed to each image",
        },
        **({"external_set": {"name": pairs.name, "source": pairs.source, "mask_rule": pairs.mask_rule,
                             "n_pairs": len(pairs.items), "content_sha1": pairs.content_sha1,
                             "registered": pairs.registered}} if pairs is not None else {}),
        "split_checked": bool(job.model_facts.get("data_split")),
        "split_warnings": split_warnings,
        "dataset_dir": _dataset_dir_text(job) if pairs is None else display_path(
            os.path.commonpath([str(Path(p).parent) for p in pairs.items["image_path"]])),
        "datasets": getattr(job.snapshot, "names", [BUILTIN]),
        "splits_dir": display_path(Path(job.splits_dir) if job.splits_dir is not None else job.snapshot.folder),
        "splits_sha1": job.snapshot.sha1(),  # the split files' bytes as read once for this evaluation
        "image_ids_sha1": hashlib.sha1(ids.encode()).hexdigest()[:12],
        "evaluated_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _write_results(job: _Job, split: str, split_dir: Path, scores: _Scores, metrics: dict,
                   val_result: EvalResult | None) -> EvalResult:
    """per_image.csv, threshold_sweep.csv (val) and metrics.json, written last (its presence means the
    evaluation completed); a split rewritten while this ran (`data split --overwrite`) is refused, not recorded
    as checked. A file the system refuses (a full disk) is one line naming it; the files this call made before it
    are removed, and so are the folders it made."""
    from seglib.infra.io import NewFolder

    job.snapshot.check_unchanged(f"{split} was being scored")
    texts = {split_dir / PER_IMAGE: scores.per_image.to_csv(index=False, float_format="%.6g", lineterminator="\n")}
    if scores.sweep is not None:
        texts[split_dir / SWEEP] = scores.sweep.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    paths, made = [*texts, split_dir / METRICS], []
    with NewFolder(split_dir):  # removed again when it is left empty
        for path in paths:
            new = not path.exists()
            try:
                if path in texts:
                    write_text_atomic(path, texts[path])
                else:
                    write_json_atomic(path, metrics)
            except OSError as exc:
                for done in made:
                    done.unlink(missing_ok=True)
                raise SeglibError(f"{path}: cannot write ({exc.strerror or exc}); the scores of {split} were not "
                                  "saved") from None
            if new:
                made.append(path)
    return EvalResult(split, split_dir, metrics, scores.per_image, scores.sweep, paths, val_result)


def _dataset_dir_text(job: _Job) -> str:
    """The built-in set's folder, or the registered sets the split's photos come from."""
    from seglib.data.catalog import find_dataset_dir

    names = getattr(job.snapshot, "names", [BUILTIN])
    return display_path(find_dataset_dir(job.dataset_dir)) if names == [BUILTIN] else ", ".join(names)
