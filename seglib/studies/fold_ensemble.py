"""The fold ensemble: a recipe's fold runs averaged as one model, and its estimate on the folds.

`ensemble_predictor(checkpoints)` averages the members' probabilities (each with flip TTA) and thresholds the
average at 0.5, as the fold runs are scored; `seglib predict --ensemble RECIPE` uses the recipe's fold runs
(runs/RECIPE-foldK, last epoch), the final-model option.

Those fold runs cannot score their own ensemble: each fold trained every member but one. `nested_estimate`
therefore runs a nested cross-validation: for each fold K, one run per other fold J trains on train+val less K
and J (runs/RECIPE-foldK-innerJ, J its val set) and their average is scored on fold K like the recipe's fold runs
(last epoch, mask resolution, flip TTA, threshold 0.5). Its result, reports/cv/RECIPE-ensemble.json, compares with
the recipe's (`seglib cv --compare RECIPE RECIPE-ensemble`): an average of members trained on three fifths of
train+val against one model trained on four fifths, as the final ensemble stands to one model refit on all of
it. Test is never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import write_json_atomic
from seglib.runs import Run, check_run_name
from seglib.studies.crossval import (
    CV_THRESHOLD,
    CV_TTA,
    check_folds,
    fold_plan,
    fold_run_name,
    load_result,
    result_lock,
    result_path,
    run_fold,
    score_file,
    score_on_fold,
    summarise,
)

logger = logging.getLogger(__name__)
ENSEMBLE = "-ensemble"  # reports/cv/RECIPE-ensemble.json: the nested estimate of RECIPE's fold ensemble


class EnsembleNetwork:
    """`network(batch, tta)`: the mean of the member networks' probabilities (`seglib.predict.Network`s)."""

    def __init__(self, networks: list):
        if not networks:
            raise SeglibError("an ensemble needs at least one member")
        self.networks = list(networks)
        self.device = self.networks[0].device

    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        return np.mean([network(batch, tta) for network in self.networks], axis=0, dtype=np.float32)


def ensemble_predictor(checkpoints: list[Path], *, load=None, threshold: float = CV_THRESHOLD, tta: bool = CV_TTA,
                       **kwargs):
    """A Predictor averaging the checkpoints' networks (loaded by `load(path) -> Predictor`, PyTorch by default);
    members must take the same input (size, geometry, stride). Threshold and TTA are the fold protocol's unless
    given: an ensemble has no val of its own to choose them on."""
    from seglib.predict import Predictor

    load = load or (lambda path: Predictor.from_checkpoint(path, threshold=threshold, tta=tta))
    members = [load(Path(path)) for path in checkpoints]
    if not members:
        raise SeglibError("an ensemble needs at least one checkpoint")
    first = members[0]
    for path, member in zip(checkpoints[1:], members[1:], strict=True):
        if (member.input_size, member.geometry, member.multiple) != (first.input_size, first.geometry, first.multiple):
            raise SeglibError(f"{path}: input {member.input_size}px {member.geometry} (stride {member.multiple}) "
                              f"differs from {checkpoints[0]}'s {first.input_size}px {first.geometry} (stride "
                              f"{first.multiple}); an ensemble's members take the same input")
    facts = {k: v for k, v in first.checkpoint.items() if k not in ("epoch", "best_val_iou")}  # not the ensemble's
    kwargs.setdefault("threshold_source", "as on the folds")
    return Predictor(EnsembleNetwork([m.network for m in members]), facts, threshold=threshold, tta=tta,
                     source=f"the average of {len(members)} models ({', '.join(map(str, checkpoints))})", **kwargs)


def fold_checkpoints(recipe: str) -> list[Path]:
    """The last checkpoint of every fold run of `recipe` (runs/RECIPE-foldK, in fold order); one-line SeglibError
    when there is none or one is unfinished."""
    import re

    pattern = re.compile(rf"{re.escape(check_run_name(recipe))}-fold(\d+)")  # as fold_run_name names them
    folds = sorted(int(m.group(1)) for p in paths.runs_dir().glob(f"{recipe}-fold*")
                   if (m := pattern.fullmatch(p.name)))
    if not folds:
        raise SeglibError(f"{paths.display_path(paths.runs_dir() / fold_run_name(recipe, 0))}: no fold run of "
                          f"{recipe}; the ensemble averages its fold runs (`seglib cv --recipe {recipe}` trains them)")
    checkpoints = []
    for fold in folds:
        run = Run.named(fold_run_name(recipe, fold))
        if run.summary() is None:
            raise SeglibError(f"{paths.display_path(run.dir)}: fold run unfinished; finish it with `seglib cv "
                              f"--recipe {recipe}` (the ensemble averages every fold run)")
        checkpoints.append(run.require("last"))
    return checkpoints


def inner_run_name(recipe: str, fold: int, inner: int) -> str:
    return f"{fold_run_name(recipe, fold)}-inner{inner}"


def recipe_config(recipe: str):
    """The settings the recipe's fold runs trained with (reports/cv/RECIPE.json), without the fold."""
    from seglib.settings import config_from_dict

    return config_from_dict(load_result(recipe)["config"], str(result_path(recipe))).replace(fold=-1, inner_fold=-1)


def nested_estimate(recipe: str, *, folds: list[int] | None = None, overwrite: bool = False, dataset_dir=None,
                    splits_dir=None) -> dict:
    """Train the inner runs of each outer fold (reused when finished with the recipe's settings, resumed when
    stopped), score their average on the outer fold, and save reports/cv/RECIPE-ensemble.json (see the module)."""
    from seglib.data.splits import fold_numbers

    cfg = recipe_config(recipe)
    available = fold_numbers(splits_dir)
    numbers = check_folds(folds, available)
    name = f"{recipe}{ENSEMBLE}"
    with contextlib.ExitStack() as held:
        held.enter_context(result_lock(name))
        inner = {(k, j): Run.named(inner_run_name(recipe, k, j)) for k in numbers for j in available if j != k}
        for run in inner.values():
            held.enter_context(run.lock())
        plans = {key: fold_plan(run, cfg.replace(fold=key[0], inner_fold=key[1]), overwrite)
                 for key, run in inner.items()}
        scores, summaries = [], []
        for k in numbers:
            members = [key for key in inner if key[0] == k]
            for key in members:
                _, summary = run_fold(cfg.replace(fold=k, inner_fold=key[1]), inner[key], plans[key],
                                      dataset_dir=dataset_dir, splits_dir=splits_dir, refine=False)
                summaries.append(summary)
            scores.append(_outer_score(k, [inner[key] for key in members], dataset_dir, splits_dir))
        result = _summary(name, recipe, cfg, scores, summaries)
        write_json_atomic(result_path(name), result)
    return result


def _outer_score(fold: int, runs: list[Run], dataset_dir, splits_dir) -> dict:
    """The inner runs' average scored on the outer fold, with the members' own scores there (saved by `run_fold`)
    and the seconds per photo of the ensemble and of its first member alone (decode and scoring included)."""
    from seglib.predict import Predictor

    checkpoints = [run.require("last") for run in runs]
    first = Predictor.from_checkpoint(checkpoints[0], threshold=CV_THRESHOLD, tta=CV_TTA)
    loaded = {checkpoints[0]: first}  # the first member, loaded once for both
    ensemble = ensemble_predictor(checkpoints, load=lambda path: loaded.get(path) or Predictor.from_checkpoint(
        path, threshold=CV_THRESHOLD, tta=CV_TTA))
    timed = {}
    for label, predictor in (("member", first), ("ensemble", ensemble)):
        start = time.perf_counter()
        score = score_on_fold(predictor, fold, dataset_dir=dataset_dir, splits_dir=splits_dir)
        timed[label] = (time.perf_counter() - start) / score["n_images"]
    members = [json.loads((run.dir / score_file(False)).read_text())["mean_iou"] for run in runs]
    score.update(members=[run.dir.name for run in runs], member_mean_iou=statistics.fmean(members),
                 seconds_per_photo=timed["ensemble"], member_seconds_per_photo=timed["member"])
    logger.info(f"fold {fold}: the average of {len(runs)} inner runs scores mean IoU {score['mean_iou']:.4f} (its "
                f"members alone {score['member_mean_iou']:.4f} on average), boundary IoU {score['boundary_iou']:.4f}; "
                f"{timed['ensemble'] / timed['member']:.1f}x a member's prediction time")
    return score


def _summary(name: str, recipe: str, cfg, scores: list[dict], summaries: list[dict]) -> dict:
    """The recipe's result layout (`crossval.summarise`), plus what the ensemble costs and what its members
    score alone."""
    result = summarise(name, cfg.to_saved_dict(), scores, summaries)
    member_means = [s["member_mean_iou"] for s in scores]
    result.update(
        ensemble_of=recipe,
        members_per_fold=len(scores[0]["members"]),
        member_mean_iou=statistics.fmean(member_means),
        prediction_cost=statistics.fmean(s["seconds_per_photo"] / s["member_seconds_per_photo"] for s in scores),
        protocol=f"nested: for each fold, the average of {len(scores[0]['members'])} runs trained on train+val less "
                 f"that fold and one other (each the last epoch) scored on the fold at mask resolution, "
                 f"{'flip TTA, ' if CV_TTA else ''}threshold {CV_THRESHOLD}",
    )
    return result


def external_check(recipe: str, pairs, *, splits_dir=None) -> Path:
    """After the decision, to describe it: each outer fold's inner runs averaged, and each of them alone, scored on
    the external set `pairs` like the fold runs (flip TTA, threshold 0.5): reports/cv/SET-check-RECIPE-ensemble.csv,
    the rows of recipe RECIPE-ensemble and of RECIPE-ensemble-members. The set chooses nothing."""
    from seglib.data.splits import fold_numbers
    from seglib.predict import Predictor
    from seglib.studies.crossval import check_row, write_check

    name = f"{recipe}{ENSEMBLE}"
    available = fold_numbers(splits_dir)
    rows = []
    with contextlib.ExitStack() as held:
        for k in available:
            runs = [Run.named(inner_run_name(recipe, k, j)) for j in available if j != k]
            if any(run.summary() is None for run in runs):
                raise SeglibError(f"{name}: the inner runs of fold {k} are not all finished; run `seglib cv --ensemble "
                                  f"{recipe}` first")
            for run in runs:
                held.enter_context(run.lock())
            members = {run.require("last"): Predictor.from_checkpoint(run.require("last"), threshold=CV_THRESHOLD,
                                                                      tta=CV_TTA) for run in runs}  # each loaded once
            rows.append(check_row(name, f"{fold_run_name(recipe, k)}-inner* ({len(runs)} averaged)",
                                  ensemble_predictor(list(members), load=members.__getitem__), pairs,
                                  where=runs[0].dir))
            logger.info(f"fold {k}: {len(runs)} inner runs averaged, {pairs.name} mean IoU "
                        f"{rows[-1][f'{pairs.name}_mean_iou']:.4f}")
            rows += [check_row(f"{name}-members", run.dir.name, member, pairs, where=run.dir)
                     for run, member in zip(runs, members.values(), strict=True)]
    return write_check(pairs.name, name, sorted(rows, key=lambda row: row["recipe"]))
