"""Saved evaluations: reused when they belong to the current checkpoint, scored otherwise (notebooks 04/05)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seglib.data.external import PairSet
from seglib.evaluate.options import EvalOptions
from seglib.evaluate.protocol import evaluate_run
from seglib.evaluate.tables import EvalResult
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.runs import BEST, METRICS, PER_IMAGE, SWEEP, Run, same_checkpoint

logger = logging.getLogger(__name__)


def _when(metrics: dict) -> str:
    stamp = metrics.get("evaluated_at", "")
    try:
        return _dt.datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return stamp or "an unknown date"


def model_label(epoch, tta, name: str = BEST) -> str:
    """'<checkpoint file>, epoch 3, with flip TTA' / '... without TTA' (the run's best checkpoint unless `name`
    says otherwise): both settings named, so no reader has to infer "no TTA" from a word left out."""
    return f"{name}, epoch {epoch}, {'with flip TTA' if tta else 'without TTA'}"


def same_external_set(metrics: dict, pairs: PairSet) -> bool:
    """Was this saved evaluation made on exactly `pairs` (same content hash; for results saved before the hash
    was recorded, the same image ids in the same order)?"""
    recorded = (metrics.get("external_set") or {}).get("content_sha1")
    if recorded:
        return recorded == pairs.content_sha1
    return metrics.get("image_ids_sha1") == pairs.ids_sha1


def saved_result(run_dir, split: str):
    """The evaluation saved in `<run_dir>/eval/<split>/` as an EvalResult, or None when it is not complete
    (metrics.json is written last)."""
    return saved_at(Run.resolve(Path(run_dir)).eval_dir(split))


def saved_at(folder: Path):
    """The evaluation saved in `folder` (an `<eval>/<split>/` folder) as an EvalResult, or None when it is not
    complete (metrics.json is written last)."""
    split = folder.name
    if not (folder / METRICS).is_file():
        return None
    metrics = json.loads((folder / METRICS).read_text())
    per_image = pd.read_csv(folder / PER_IMAGE, dtype={"id": str})
    sweep_path = folder / SWEEP
    sweep = pd.read_csv(sweep_path) if sweep_path.is_file() else None
    return EvalResult(split, folder, metrics, per_image, sweep,
                      [p for p in (folder / PER_IMAGE, sweep_path, folder / METRICS) if p.is_file()])


def _checkpoint_epoch(path: Path):
    from seglib.checkpoint import load_checkpoint

    return load_checkpoint(path).get("epoch")


def load_or_evaluate(run_dir, split: str | PairSet, *, dataset_dir=None, splits_dir=None, tta: bool | None = False,
                     rescore: bool = False, progress: bool = False, n_boot: int = 2000):
    """The run's evaluation on `split` (or an external set, a `PairSet`), reused when possible, and a line (logged)
    saying which.

    val: reused when `eval/val/metrics.json` was made from the run's current best checkpoint (same epoch) with
    the same TTA setting, otherwise evaluated again. test and external sets: an existing score is always reused
    (scored once per run) unless `rescore`; a warning is added when it belongs to another checkpoint. `tta=None`
    takes the saved evaluation's TTA setting (none when there is no saved one). A run without a best checkpoint
    is a SeglibError telling how to train it. `run_dir` may be a `CheckpointEvals` instead: a checkpoint outside
    runs/, its evaluations in its own folder, reused by the same rules.
    """
    best, eval_root, target = _scored_model(run_dir)
    epoch = _checkpoint_epoch(best)
    pairs = split if isinstance(split, PairSet) else None
    name = pairs.name if pairs is not None else split
    saved = saved_at(eval_root / name)
    if tta is None:
        tta = bool(saved.metrics.get("tta")) if saved is not None else False
    kind = model_label(epoch, tta, best.name)
    if name == "test" or pairs is not None:
        if saved is not None and pairs is not None and not same_external_set(saved.metrics, pairs) and not rescore:
            raise SeglibError(f"{display_path(eval_root / name)}: holds scores of other photos under the name "
                              f"{name!r} (content {(saved.metrics.get('external_set') or {}).get('content_sha1', '?')}"
                              f", this set {pairs.content_sha1}); they are not shown for it. Pass rescore=True "
                              "(--overwrite) to score this set in their place")
        if saved is not None and not rescore:
            line = (f"{name} was already scored for this run on {_when(saved.metrics)}; showing those results "
                    f"({name} is scored once per run; rescore=True scores it again).")
            if not same_checkpoint(saved.metrics, epoch, tta, best.name):
                scored = model_label(saved.metrics.get("checkpoint_epoch"), saved.metrics.get("tta"),
                                     Path(str(saved.metrics.get("checkpoint", "?"))).name)
                line += f" Note: they were scored with {scored}, not as asked now ({kind})."
            logger.info(line)
            return saved
        if saved is None and (eval_root / name / PER_IMAGE).exists() and not rescore:
            raise SeglibError(f"{display_path(eval_root / name)}: an earlier {name} scoring did not finish "
                              f"(per_image.csv without metrics.json); pass rescore=True to score {name} again")
        logger.info(f"rescore=True: scoring {name} again ({kind}), replacing the results of {_when(saved.metrics)}."
                    if saved is not None else f"{name}: not scored yet; scoring it now ({kind}) with the threshold "
                                              "chosen on val.")
        return evaluate_run(split=split, **target, dataset_dir=dataset_dir, splits_dir=splits_dir,
                            options=EvalOptions(tta=tta, overwrite=rescore, progress=progress, n_boot=n_boot))
    if saved is not None and same_checkpoint(saved.metrics, epoch, tta, best.name) \
            and saved.metrics.get("threshold_source") == "val sweep":
        logger.info(f"{split}: reusing the evaluation of {_when(saved.metrics)} (same checkpoint: {kind}; "
                    f"threshold {saved.metrics['threshold']:g}).")
        return saved
    why = "not evaluated yet" if saved is None else \
        "the saved evaluation is for another checkpoint, TTA setting or threshold source"
    logger.info(f"{split}: {why}; evaluating now ({kind}).")
    return evaluate_run(split=split, **target, dataset_dir=dataset_dir, splits_dir=splits_dir,
                        options=EvalOptions(tta=tta, progress=progress, n_boot=n_boot))


@dataclass(frozen=True)
class CheckpointEvals:
    """A checkpoint outside runs/ and the folder its evaluations go to (`<out_dir>/<split>/`): what
    `load_or_evaluate` takes in place of a run."""

    checkpoint: Path
    out_dir: Path


def _scored_model(run_dir) -> tuple[Path, Path, dict]:
    """(the checkpoint file, its evaluations' folder, `evaluate_run`'s keywords naming it) for a run or a
    `CheckpointEvals`."""
    if isinstance(run_dir, CheckpointEvals):
        if not Path(run_dir.checkpoint).is_file():
            raise SeglibError(f"{display_path(Path(run_dir.checkpoint))}: checkpoint not found")
        return Path(run_dir.checkpoint), Path(run_dir.out_dir), {"checkpoint": Path(run_dir.checkpoint),
                                                                 "out_dir": Path(run_dir.out_dir)}
    run = Run.resolve(run_dir)
    return run.require("best"), run.eval_root, {"run_or_dir": run.dir}


# The sets a notebook scores a run on: its own test split, another registered set's test split (a cross-data-set
# score), or a whole external set for generalisation (notebooks 04 and 05).
def outside_pairs(name: str, trained_on: list[str]):
    """The set a notebook scores for generalisation: all of `name` (a registered set, a CSV or IMAGES:MASKS), or
    only its test split where the model trained on that registered set."""
    from seglib.data.registry import scored_set
    from seglib.data.selection import split_test_pairs

    return split_test_pairs(name) if name in trained_on else scored_set(name)


def examined_test(run_dir, dataset: str, trained_on: str, **options) -> tuple:
    """Notebooks 04 and 05: (the test result, the set(s) its photos come from): the run's own test split for
    "default" or the run's own sets, else the test split of the registered set `dataset` (a cross-data-set score).
    `options` go to `evaluate.load_or_evaluate`."""
    from seglib.data.selection import split_test_pairs
    if dataset in ("default", trained_on):
        return load_or_evaluate(run_dir, "test", **options), trained_on
    pairs = split_test_pairs(dataset)
    return load_or_evaluate(run_dir, pairs, **options), dataset


def examined_results(run_dir, dataset: str, trained_on: str, splits: list[str], **options) -> tuple[dict, dict]:
    """Notebook 05: ({split: its result}, {split: the set(s) its photos come from}), val scored before test (its
    threshold); test as `examined_test` gives it, val always the run's own."""
    results, data_of = {}, {}
    for split in sorted(splits, key=lambda s: s != "val"):
        if split == "test":
            results[split], data_of[split] = examined_test(run_dir, dataset, trained_on, **options)
        else:
            results[split], data_of[split] = load_or_evaluate(run_dir, split, **options), trained_on
    return results, data_of
