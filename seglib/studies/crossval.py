"""Recipes compared on the folds of train+val (data/splits/folds.csv), never on test.

`cross_validate(cfg, recipe)` trains the recipe once per fold (runs/RECIPE-foldK: train+val less fold K) and
scores each fold's *last* epoch on its held-out photos -- no checkpoint or threshold is picked on the photos
that score it: mask resolution, flip TTA, threshold 0.5. The result (fold scores, mean, sd) is saved to
reports/cv/RECIPE.json and becomes the recipe's row in reports/experiments.csv.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import statistics
from pathlib import Path

from seglib.infra import locks, paths
from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.io import write_json_atomic
from seglib.runs import Run, check_run_name

FOLD_SCORE = "cv_score.json"  # a fold run's score on its held-out fold, kept in the run folder
REFINED = "-refined"  # a recipe scored with boundary refinement: reports/cv/RECIPE-refined.json, same fold runs
CV_THRESHOLD = 0.5  # fixed: choosing it on the held-out fold would score the fold with what it picked
CV_TTA = True
RUNNING_ONLY = ("threads", "num_workers")  # settings of how a run ran, not of what it trained
logger = logging.getLogger(__name__)
ADOPT_MARGIN = 0.005  # the adoption rule (docs/recipes.md): a change is adopted only when it raises the fold mean by more than this


def cv_dir() -> Path:
    """reports/cv/ ($SEGLIB_REPORTS_DIR moves it with the other reports)."""
    return paths.reports_dir() / "cv"


def fold_run_name(recipe: str, fold: int) -> str:
    return f"{check_run_name(recipe)}-fold{fold}"


def score_fold(run: Run, fold: int, *, dataset_dir=None, splits_dir=None, refine: bool = False) -> dict:
    """Mean IoU and boundary IoU of a fold run's last epoch on its held-out fold (TTA, threshold 0.5; with
    `refine`, the probabilities' edges fitted to each photo: `seglib.predict.outputs.refine_probabilities`)."""
    from seglib.predict import Predictor

    predictor = Predictor.from_checkpoint(run.require("last"), tta=CV_TTA, threshold=CV_THRESHOLD, refine=refine)
    return {**score_on_fold(predictor, fold, dataset_dir=dataset_dir, splits_dir=splits_dir),
            "epoch": predictor.checkpoint.get("epoch")}


def score_on_fold(predictor, fold: int, *, dataset_dir=None, splits_dir=None) -> dict:
    """Mean IoU and boundary IoU of `predictor` on fold `fold`'s photos (mask resolution, threshold 0.5)."""
    from seglib.data.dataset import SegmentationDataset
    from seglib.data.external import PairSet
    from seglib.data.splits import fold_split
    from seglib.evaluate.records import collect_probabilities
    from seglib.evaluate.scoring import score_records

    _, held_out = fold_split(fold, splits_dir)
    items = SegmentationDataset.from_table(held_out, dataset_dir, cache=False).items
    records = collect_probabilities(predictor, PairSet(f"fold {fold}", items), progress=False)
    table = score_records(records, CV_THRESHOLD)
    return {"fold": fold, "n_images": len(table), "mean_iou": float(table["iou"].mean()),
            "boundary_iou": float(table["boundary_iou"].mean())}


def summarise(recipe: str, cfg_dict: dict, folds: list[dict], train_summaries: list[dict], refine: bool = False
              ) -> dict:
    """Mean and sample sd over folds of each score, plus what trained them."""
    ious = [f["mean_iou"] for f in folds]
    boundary = [f["boundary_iou"] for f in folds]
    minutes = [s["train_seconds"] / 60 for s in train_summaries]
    return {
        "recipe": recipe, "config": cfg_dict, "folds": folds,
        "mean_iou": statistics.fmean(ious), "sd_iou": statistics.stdev(ious) if len(ious) > 1 else 0.0,
        "boundary_iou": statistics.fmean(boundary),
        "sd_boundary_iou": statistics.stdev(boundary) if len(boundary) > 1 else 0.0,
        "train_minutes_per_fold": statistics.fmean(minutes) if minutes else None,
        "images_per_second": statistics.fmean(s["images_per_second"] for s in train_summaries) if minutes else None,
        "epochs": max((s["epochs_run"] for s in train_summaries), default=None),
        "device": train_summaries[0].get("device", "") if train_summaries else "",
        "protocol": f"last epoch of each fold run, scored on its held-out fold at mask resolution, "
                    f"{'flip TTA, ' if CV_TTA else ''}threshold {CV_THRESHOLD}"
                    + (", edges refined to the photo (guided filter)" if refine else ""),
        "refine": refine,
        "date": datetime.date.today().isoformat(),
    }


def cross_validate(cfg, recipe: str, *, folds: list[int] | None = None, overwrite: bool = False,
                   dataset_dir=None, splits_dir=None, refine: bool = False) -> dict:
    """Train and score `cfg` on each fold. A fold run that finished with these settings is reused, one stopped
    part-way resumes; one trained with other settings is refused before anything is trained, unless `overwrite`.
    With `refine` the same fold runs are scored with boundary refinement and the result is the recipe
    `result_name(recipe, refine)`. The result and every fold run are locked meanwhile: a second writer of either
    is refused at once."""
    from seglib.data.splits import fold_numbers

    numbers = check_folds(folds, fold_numbers(splits_dir))
    with contextlib.ExitStack() as held:
        held.enter_context(result_lock(result_name(recipe, refine)))
        runs = {fold: Run.named(fold_run_name(recipe, fold)) for fold in numbers}
        for run in runs.values():
            held.enter_context(run.lock())
        plans = {fold: fold_plan(runs[fold], cfg.replace(fold=fold), overwrite) for fold in numbers}
        fold = numbers[0]
        try:
            scores, summaries = [], []
            for fold in numbers:
                score, summary = run_fold(cfg.replace(fold=fold), runs[fold], plans[fold], dataset_dir=dataset_dir,
                                          splits_dir=splits_dir, refine=refine)
                scores.append(score)
                summaries.append(summary)
        except KeyboardInterrupt:
            logger.info(f"cv {recipe}: stopped at fold {fold}; run the same command again to continue (finished "
                        "folds are reused, an unfinished one resumes from its last saved epoch)")
            raise
        result = summarise(result_name(recipe, refine), cfg.to_saved_dict(), scores, summaries, refine)
        write_json_atomic(result_path(result_name(recipe, refine)), result)
    return result


def score_file(refine: bool) -> str:
    """A fold run's saved score: cv_score.json, or cv_score-refined.json with boundary refinement."""
    return FOLD_SCORE.replace(".json", f"{REFINED}.json") if refine else FOLD_SCORE


def result_name(recipe: str, refine: bool) -> str:
    """The name a recipe's result is saved under: RECIPE, or RECIPE-refined when scored with boundary refinement."""
    return f"{recipe}{REFINED}" if refine else recipe


def run_fold(fold_cfg, run: Run, plan: str, *, dataset_dir, splits_dir, refine: bool) -> tuple[dict, dict]:
    """(score, training summary) of one fold run, trained, resumed or reused as `plan` says."""
    from seglib.training.engine import train

    fold = fold_cfg.fold
    saved_score = run.dir / score_file(refine)
    if plan == "reuse":
        logger.info(f"fold {fold}: reusing the finished run {paths.display_path(run.dir)}")
    else:
        logger.info(f"fold {fold}: {'resuming' if plan == 'resume' else 'training'} {paths.display_path(run.dir)}")
        for refined in (False, True):  # scores of the training this one replaces
            (run.dir / score_file(refined)).unlink(missing_ok=True)
        trained = train(fold_cfg, run, resume=plan == "resume", overwrite=plan == "retrain", dataset_dir=dataset_dir,
                        splits_dir=splits_dir, progress=False)
        if trained.stop_reason == "interrupted":  # Ctrl-C: train saved what it had and said so
            raise KeyboardInterrupt
    summary = run.summary()
    if summary is None:
        raise SeglibError(f"{paths.display_path(run.dir)}: training did not finish")
    if saved_score.is_file():
        score = json.loads(saved_score.read_text())
    else:
        score = score_fold(run, fold, dataset_dir=dataset_dir, splits_dir=splits_dir, refine=refine)
        write_json_atomic(saved_score, score)
    logger.info(f"fold {fold}: mean IoU {score['mean_iou']:.4f}, boundary IoU {score['boundary_iou']:.4f} "
                f"({summary['train_seconds'] / 60:.1f} min)")
    return score, summary


def check_folds(folds: list[int] | None, available: list[int]) -> list[int]:
    """The folds to run (all of `available` when None): each one of folds.csv's, none twice (an aggregate over
    folds must count each fold once), at least one."""
    if folds is None:
        return list(available)
    if not folds:
        raise ConfigError("folds: no fold given; give fold numbers, or none for every fold")
    seen: set[int] = set()
    for fold in folds:
        if fold in seen:
            raise ConfigError(f"folds {','.join(map(str, folds))}: fold {fold} given twice (each fold counts once "
                              "in the mean)")
        if fold not in available:
            raise ConfigError(f"fold {fold}: not in folds.csv (folds are {', '.join(map(str, available))})")
        seen.add(fold)
    return list(folds)


def fold_plan(run: Run, fold_cfg, overwrite: bool) -> str:
    """What to do with a fold run: 'train' (none yet), 'reuse' (finished with these settings), 'resume' (stopped
    part-way with them), 'retrain' (`overwrite`, or a folder without a checkpoint made with them); a run trained
    with other settings is refused: replacing it without being asked would lose it."""
    state = run.state()
    if state == "new":
        return "train"
    if overwrite:
        return "retrain"
    difference = settings_difference(run, fold_cfg)
    if difference:
        raise SeglibError(f"{paths.display_path(run.dir)}: this fold run has other settings ({difference}); "
                          "pass --overwrite to retrain it, or give the recipe another name")
    return {"trained": "reuse", "unfinished": "resume", "other": "retrain"}[state]


def settings_difference(run: Run, fold_cfg) -> str:
    """How the run's saved settings differ from `fold_cfg` ('' when they do not; how it runs -- threads, loader
    workers -- does not count)."""
    try:
        saved = _saved_settings(run)
    except SeglibError:
        return f"its {run.config_file.name} cannot be read"
    if saved is None:
        return f"its {run.config_file.name} has settings this seglib does not know"
    wanted = fold_cfg.to_dict()
    differ = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in wanted.items()
              if saved.get(k) != v and k not in RUNNING_ONLY]
    return "; ".join(differ[:4]) + (f"; {len(differ) - 4} more" if len(differ) > 4 else "")


def result_path(recipe: str) -> Path:
    """reports/cv/RECIPE.json."""
    return cv_dir() / f"{check_run_name(recipe)}.json"


def result_lock(recipe: str):
    """The lock of a recipe's result (reports/cv/RECIPE.json): one `seglib cv --recipe RECIPE` at a time."""
    path = result_path(recipe)
    return locks.reentrant(path, f"cv result {paths.display_path(path)}")


def _saved_settings(run: Run) -> dict | None:
    """A run's saved settings, older ones filled in with the values they trained with (`config_from_dict`)."""
    from seglib.settings import config_from_dict

    saved = run.config()
    try:
        return config_from_dict(saved).to_dict() if saved is not None else None
    except SeglibError:  # settings this seglib does not know: not the same recipe
        return None


def load_result(recipe: str) -> dict:
    """A recipe's saved cross-validation result (reports/cv/RECIPE.json)."""
    path = result_path(recipe)
    if not path.is_file():
        raise SeglibError(f"{paths.display_path(path)}: no cross-validation result (run `seglib cv` first)")
    return json.loads(path.read_text())


def compare(baseline: str, recipe: str) -> dict:
    """`recipe` minus `baseline`, fold by fold, from their saved results, and what the written rule decides:
    adopt only when both were scored on the same folds, trained on the same kind of device, and the mean difference
    exceeds ADOPT_MARGIN."""
    return compare_results(load_result(baseline), load_result(recipe))


def compare_results(base: dict, other: dict) -> dict:
    """`compare` of two results as saved (dicts of reports/cv/RECIPE.json)."""
    baseline, recipe = base["recipe"], other["recipe"]
    base_folds = {f["fold"]: f["mean_iou"] for f in base["folds"]}
    other_folds = {f["fold"]: f["mean_iou"] for f in other["folds"]}
    folds = sorted(base_folds.keys() & other_folds.keys())
    if not folds:
        raise SeglibError(f"{baseline} and {recipe}: no fold scored in both; nothing to compare")
    differences = [other_folds[k] - base_folds[k] for k in folds]
    mean = statistics.fmean(differences)
    same_device = base.get("device", "") == other.get("device", "")
    complete = base_folds.keys() == other_folds.keys()
    return {"baseline": baseline, "recipe": recipe, "folds": folds, "differences": differences,
            "mean_difference": mean, "better_on": sum(d > 0 for d in differences), "same_device": same_device,
            "devices": (base.get("device", ""), other.get("device", "")), "complete": complete,
            "adopt": same_device and complete and mean > ADOPT_MARGIN}


def external_check(recipe: str, pairs, *, splits_dir=None) -> Path:
    """Each finished fold run of `recipe` (its last epoch) scored on the external set `pairs` (a `PairSet`), flip
    TTA, threshold 0.5: reports/cv/SET-check-RECIPE.csv. Made after a decision, to describe it: the set chooses
    nothing. A fold run whose record says the set trained it is refused (the set would not be external to it)."""
    from seglib.data.splits import fold_numbers
    from seglib.predict import Predictor

    runs = [Run.named(fold_run_name(recipe, k)) for k in fold_numbers(splits_dir)]
    finished = [run for run in runs if run.summary() is not None]
    if not finished:
        raise SeglibError(f"{recipe}: no finished fold run (runs/{recipe}-foldK); run `seglib cv --recipe {recipe}` "
                          "first")
    rows = []
    with contextlib.ExitStack() as held:  # a `seglib cv --overwrite` of the recipe waits, not replaces a run read here
        for run in finished:
            held.enter_context(run.lock())
        for run in finished:
            predictor = Predictor.from_checkpoint(run.require("last"), tta=CV_TTA, threshold=CV_THRESHOLD)
            rows.append(check_row(recipe, run.dir.name, predictor, pairs, where=run.dir))
            logger.info(f"{run.dir.name}: {pairs.name} mean IoU {rows[-1][f'{pairs.name}_mean_iou']:.4f}")
    return write_check(pairs.name, recipe, rows)


def check_row(recipe: str, label: str, predictor, pairs, *, where: Path) -> dict:
    """A row of an external check: `predictor` (a fold run, or several averaged, named `label`) on `pairs`; refused
    in one line naming `where` when its checkpoint's record says the set, or photos with the same bytes as its
    photos, trained it."""
    from seglib.data.selection import check_not_trained_on, trained_sets
    from seglib.evaluate.records import collect_probabilities
    from seglib.evaluate.scoring import score_records
    from seglib.infra.errors import DataError

    record = predictor.checkpoint.get("data_split")
    if pairs.name in trained_sets(record):
        raise SeglibError(f"{paths.display_path(where)}: {pairs.name} trained this run; it cannot check it")
    try:
        check_not_trained_on(record, pairs)  # by the photos' bytes: a copy of the set under another name
    except DataError as exc:
        raise SeglibError(f"{paths.display_path(where)}: cannot check it: {exc}") from None
    table = score_records(collect_probabilities(predictor, pairs, progress=False), CV_THRESHOLD)
    return {"recipe": recipe, "fold_run": label, "checkpoint_epoch": predictor.checkpoint.get("epoch"),
            f"{pairs.name}_mean_iou": round(float(table["iou"].mean()), 4),
            f"{pairs.name}_boundary_iou": round(float(table["boundary_iou"].mean()), 4),
            "threshold": CV_THRESHOLD, "tta": CV_TTA, "n_images": len(table)}


def write_check(set_name: str, name: str, rows: list[dict]) -> Path:
    """reports/cv/SET-check-NAME.csv, written atomically."""
    import csv
    import io

    from seglib.infra.io import write_text_atomic

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = cv_dir() / f"{check_run_name(set_name)}-check-{check_run_name(name)}.csv"
    write_text_atomic(path, text.getvalue())
    return path


def fold_count(n: int) -> str:
    return f"{n} fold" if n == 1 else f"{n} folds"


def describe_comparison(result: dict) -> str:
    """The comparison in two lines: the differences, then the rule's decision and why."""
    per_fold = " ".join(f"{d:+.4f}" for d in result["differences"])
    n = len(result["folds"])
    lines = [f"{result['recipe']} minus {result['baseline']}: {result['mean_difference']:+.4f} mean over "
             f"{fold_count(n)} (per fold {per_fold}), better on {result['better_on']} of {n}"]
    if not result["same_device"]:
        base_device, device = result["devices"]
        lines.append(f"not comparable: trained on {base_device} and {device}; compare recipes trained on the same "
                     f"device")
    elif not result["complete"]:
        lines.append("undecided: the two were not scored on the same folds; the rule compares every fold")
    elif result["adopt"]:
        lines.append(f"adopt: more than +{ADOPT_MARGIN} (the rule in docs/recipes.md)")
    else:
        lines.append(f"keep {result['baseline']}: not more than +{ADOPT_MARGIN} (the rule in docs/recipes.md)")
    return "\n".join(lines)
