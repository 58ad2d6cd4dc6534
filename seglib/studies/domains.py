"""The registered sets as domains: which are on this machine, where a split's scores are saved, and the one rule for
choosing across domains, the multi-domain validation score.

The score (docs/recipes.md, "Choosing across domains") is the mean, over the registered sets present on this machine
(each weighted equally), of a model's mean IoU on that set's **val** split, scored by the model's own protocol: its
threshold chosen on its own val split, its TTA setting. A set the model trained on contributes its rows of the
model's own val evaluation; any other set's val split is scored as an evaluation set named `NAME-val`, with that
same threshold. No test split enters it. `multi_domain_val` writes what it found to the model's evaluation folder
(`multi_domain_val.json`) beside the cached evaluations it is made of.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from seglib.data.descriptions import BUILTIN
from seglib.data.registry import NO_SPLIT, NOT_FETCHED, present_sets, set_status  # noqa: F401 (the studies' names)
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path

logger = logging.getLogger(__name__)

MULTI_DOMAIN = "multi_domain_val.json"  # in a model's evaluation folder: its last multi-domain val score


def split_folder(name: str, split: str) -> str:
    """The folder an evaluation of split `split` of set `name` is saved under: the built-in set's splits as
    themselves (`val`, `test`), any other set's as `NAME-val`, `NAME-test`."""
    return split if name == BUILTIN else f"{name}-{split}"


@dataclass(frozen=True)
class Scored:
    """A model as the studies score it: a run (`runs/NAME`, its eval folder) or a checkpoint with a folder of its
    own for its evaluations (a candidate of the generality table)."""

    name: str
    target: object  # what `evaluate.load_or_evaluate` takes: a run folder or an `evaluate.reuse.CheckpointEvals`
    eval_root: Path
    tta: bool = True
    inference: object = None  # prediction-time levers (`predict.levers.InferenceOptions`) scored with, or None

    @property
    def scores_root(self) -> Path:
        """Where its evaluations are saved: the evaluation folder, or with levers its `@<levers>` folder."""
        from seglib.predict.levers import LEVER_PREFIX, lever_folder

        if self.inference is not None and self.inference.refine and not self.inference.active:  # refine alone
            return self.eval_root / f"{LEVER_PREFIX}refine"
        return lever_folder(self.eval_root, self.inference)

    def with_levers(self, inference) -> Scored:
        """The same model scored with prediction-time levers: its evaluations kept apart, in `<eval>/@<levers>/`."""
        from dataclasses import replace

        from seglib.predict.levers import lever_folder

        return replace(self, inference=inference, name=f"{self.name} {lever_folder(Path(), inference)}".strip())

    @classmethod
    def of_run(cls, run, tta: bool = True) -> Scored:
        from seglib.runs import Run

        found = Run.resolve(run)
        found.require("best")
        return cls(found.name, found.dir, found.eval_root, tta)

    @classmethod
    def of_checkpoint(cls, name: str, checkpoint: Path, eval_root: Path, tta: bool = True) -> Scored:
        from seglib.evaluate.reuse import CheckpointEvals

        return cls(name, CheckpointEvals(Path(checkpoint), Path(eval_root)), Path(eval_root), tta)

    def evaluate(self, split, *, rescore: bool = False, progress: bool = False):
        """Its evaluation on `split` ("val" or a `PairSet`), reused when it fits (`evaluate.load_or_evaluate`; with
        levers: reused when saved by the same checkpoint epoch)."""
        from seglib.evaluate import EvalOptions, evaluate_run, load_or_evaluate
        from seglib.evaluate.reuse import CheckpointEvals, saved_at

        if self.inference is None or not (self.inference.active or self.inference.refine):
            return load_or_evaluate(self.target, split, tta=self.tta, rescore=rescore, progress=progress)
        folder = self.scores_root / getattr(split, "name", split)
        saved = saved_at(folder)
        if saved is not None and not rescore:
            return saved
        i = self.inference
        options = EvalOptions(tta=self.tta, overwrite=True, progress=progress, refine=i.refine, scales=i.scales,
                              max_upscale=i.max_upscale, second_look=i.second_look)
        # refine alone is not a lever folder of evaluate_run's: scored as a checkpoint into this model's own folder
        out_dir = self.eval_root if self.inference.refine else None  # evaluate_run adds its @refine folder
        if isinstance(self.target, CheckpointEvals) or out_dir is not None:
            from seglib.runs import Run

            checkpoint = getattr(self.target, "checkpoint", None) or Run.resolve(self.target).best
            return evaluate_run(None, split, checkpoint=checkpoint, out_dir=out_dir or self.target.out_dir,
                                options=options)
        return evaluate_run(self.target, split, options=options)


def own_rows(per_image, name: str, trained_on: list[str]):
    """The rows of set `name` in a model's own val (or test) evaluation: all of them for a model of one set, else
    those whose id is qualified by the set (`data.selection.SEPARATOR`)."""
    from seglib.data.selection import SEPARATOR

    if len(trained_on) == 1:
        return per_image
    prefix = f"{name}{SEPARATOR}"
    return per_image[per_image["id"].astype(str).str.startswith(prefix)]


def _same_protocol(saved: dict, val: dict) -> bool:
    """Was an evaluation of another set's val split made by the same checkpoint, TTA and threshold as `val`?"""
    return all(saved.get(k) == val.get(k) for k in ("checkpoint", "checkpoint_epoch", "tta", "threshold"))


def multi_domain_val(model, *, sets: list[str] | None = None, progress: bool = False) -> dict:
    """The multi-domain validation score of `model` (a `Scored`, or a run name or folder, scored with flip TTA):
    {"sets": {name: {n_images, mean_iou, mean_boundary_iou, scored_as}}, "mean_iou", "mean_boundary_iou", ...}
    over `sets` (default: the registered sets present here), each set weighted equally; written to the model's
    evaluation folder as MULTI_DOMAIN."""
    from seglib.data.selection import split_test_pairs
    from seglib.evaluate.reuse import saved_at

    model = model if isinstance(model, Scored) else Scored.of_run(model)
    sets = list(sets) if sets is not None else present_sets()
    if not sets:
        raise SeglibError("no registered set is on this machine (seglib data list); fetch one first")
    # 1. the model's own val: its threshold (and its own sets' rows)
    val = model.evaluate("val", progress=progress)
    trained = list(val.metrics.get("trained_on") or [BUILTIN])
    per_set = {}
    for name in sets:
        # 2. each set's val rows: the model's own where it trained on the set, else the set's val split scored
        if name in trained:
            rows, scored_as = own_rows(val.per_image, name, trained), "val"
        else:
            pairs = split_test_pairs(name, "val")
            saved = saved_at(model.scores_root / pairs.name)
            stale = saved is not None and not _same_protocol(saved.metrics, val.metrics)
            rows, scored_as = model.evaluate(pairs, rescore=stale, progress=progress).per_image, pairs.name
        if not len(rows):
            raise SeglibError(f"{display_path(model.eval_root / 'val')}: no val photo of set {name!r}")
        per_set[name] = set_entry(name, rows, scored_as)
    # 3. the mean over sets, each weighted equally, and the record
    result = val_record(model.name, val.metrics, trained, per_set, sorted(set(set_status()) - set(sets)),
                        levers=model.inference.describe() if model.inference is not None else "")
    write_val_record(model.scores_root / MULTI_DOMAIN, result)
    return result


def write_val_record(path: Path, record: dict) -> None:
    """Write a multi-domain val record atomically, unless `path` holds the same record already (nothing differs but
    `computed_at`): a committed record then stays byte for byte, and scoring a model again leaves a clean tree."""
    from seglib.infra.io import write_json_atomic
    from seglib.runs import read_json

    def said(found: dict | None) -> dict | None:
        return None if found is None else {key: value for key, value in found.items() if key != "computed_at"}

    if said(read_json(path)) != said(json.loads(json.dumps(record))):
        write_json_atomic(path, record)


def photo_key(name: str, photo_id: str) -> str:
    """A photo's id within set `name`: a model of several sets qualifies its ids (`human-seg/6`), a model of one
    set and another set's val split do not (`6`); the key is the same for both, so any two models pair."""
    from seglib.data.selection import SEPARATOR

    return photo_id.removeprefix(f"{name}{SEPARATOR}")


def set_entry(name: str, rows, scored_as: str) -> dict:
    """One set's entry of a multi-domain val record from its val rows (a frame with id, iou and boundary_iou):
    {n_images, mean_iou, mean_boundary_iou, scored_as, iou_by_photo (keyed by `photo_key`)}."""
    ids = [photo_key(name, i) for i in rows["id"].astype(str)]
    return {"n_images": len(rows), "mean_iou": float(rows["iou"].mean()),
            "mean_boundary_iou": float(rows["boundary_iou"].mean()), "scored_as": scored_as,
            "iou_by_photo": dict(zip(ids, rows["iou"].astype(float), strict=True))}


def val_record(model: str, protocol: dict, trained_on: list[str], per_set: dict, not_present: list[str], *,
               levers: str = "") -> dict:
    """A multi-domain val record: the model, its protocol (`protocol`: checkpoint, checkpoint_epoch, tta,
    threshold, as an evaluation's metrics hold them), the sets' entries and their mean, each set weighted equally."""
    return {"model": model, "checkpoint": protocol.get("checkpoint"),
            "checkpoint_epoch": protocol.get("checkpoint_epoch"), "tta": bool(protocol.get("tta")),
            "threshold": protocol.get("threshold"), "trained_on": list(trained_on), "sets": per_set, "levers": levers,
            "mean_iou": sum(s["mean_iou"] for s in per_set.values()) / len(per_set),
            "mean_boundary_iou": sum(s["mean_boundary_iou"] for s in per_set.values()) / len(per_set),
            "not_present": list(not_present), "computed_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def saved_multi_domain_val(eval_root: Path, epoch=None) -> dict | None:
    """The multi-domain val score last written to `eval_root` (None when there is none, or, given `epoch`, when
    it belongs to another checkpoint epoch)."""
    try:
        found = read_val_record(Path(eval_root) / MULTI_DOMAIN)
    except SeglibError:
        return None
    if epoch is not None and found.get("checkpoint_epoch") != epoch:
        return None
    return found


def read_val_record(path: Path) -> dict:
    """A multi-domain val record written before (a model's `multi_domain_val.json`, an edge-head variant's); a file
    that is not one is a SeglibError naming it."""
    try:
        found = json.loads(Path(path).read_text())
    except OSError as err:
        raise SeglibError(f"{display_path(path)}: cannot read it ({err.strerror or err})") from None
    except ValueError:
        raise SeglibError(f"{display_path(path)}: not JSON; expected a multi_domain_val.json record") from None
    if not isinstance(found, dict) or not isinstance(found.get("sets"), dict) or "mean_iou" not in found:
        raise SeglibError(f"{display_path(path)}: not a multi-domain val record (no sets and mean_iou)")
    return found


def paired_val_difference(result: dict, against: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """`result`'s multi-domain val score minus `against`'s, photo by photo: per set the mean difference over the
    same val photos, then the mean over sets (each weighted equally, as the rule); its 95% bootstrap CI resamples
    each set's photos apart. {"difference", "ci95", "better", "n", "by_set"}. Both must cover the same sets and
    photos; a SeglibError says which do not."""
    import numpy as np

    from seglib.metrics import stratified_bootstrap_ci

    if set(result["sets"]) != set(against["sets"]):
        raise SeglibError(f"{result['model']} and {against['model']}: scored over other sets "
                          f"({', '.join(result['sets'])} / {', '.join(against['sets'])}); compare over the same sets")
    diffs = {}
    for name, scores in result["sets"].items():
        mine, theirs = (_by_photo(name, scores), _by_photo(name, against["sets"][name]))
        for record, found in ((result, mine), (against, theirs)):
            if not found:
                raise SeglibError(f"{record['model']}: its record keeps no IoU per {name} val photo (written before "
                                  "seglib kept them); score it again to pair it")
        if set(mine) != set(theirs):
            raise SeglibError(f"{result['model']} and {against['model']}: not the same {name} val photos")
        diffs[name] = np.array([mine[k] - theirs[k] for k in sorted(mine)])
    return {"difference": float(np.mean([d.mean() for d in diffs.values()])),
            "ci95": stratified_bootstrap_ci(diffs.values(), n_boot=n_boot, seed=seed),
            "better": int(sum((d > 0).sum() for d in diffs.values())), "n": int(sum(map(len, diffs.values()))),
            "by_set": {name: float(d.mean()) for name, d in diffs.items()}}


def _by_photo(name: str, scores: dict) -> dict:
    """A set entry's IoU per photo keyed by `photo_key` (records written before it kept the ids as evaluated)."""
    return {photo_key(name, k): v for k, v in (scores.get("iou_by_photo") or {}).items()}


def describe_difference(result: dict, against: dict, margin: float) -> str:
    """'B minus A on the multi-domain val score: +0.0061 (95% CI ...), better on k of n val photos; ...'."""
    d = paired_val_difference(result, against)
    by_set = ", ".join(f"{name} {v:+.4f}" for name, v in d["by_set"].items())
    verdict = "more than" if d["difference"] > margin else "not more than"
    return (f"{result['model']} minus {against['model']}: {d['difference']:+.4f} (95% CI {d['ci95'][0]:+.4f} to "
            f"{d['ci95'][1]:+.4f}, photo by photo, each set weighted equally), better on {d['better']} of {d['n']} "
            f"val photos ({by_set}); {verdict} the rule's +{margin} margin")


def describe(result: dict) -> str:
    """One line per set and the mean, as `seglib generality --val` prints it."""
    lines = [f"{result['model']}: multi-domain val mean IoU {result['mean_iou']:.4f}, boundary IoU "
             f"{result['mean_boundary_iou']:.4f} over {len(result['sets'])} set(s) (threshold {result['threshold']:g}"
             f"{', flip TTA' if result['tta'] else ''})"]
    lines += [f"  {name}: {s['mean_iou']:.4f} (boundary {s['mean_boundary_iou']:.4f}), {s['n_images']} val photos "
              f"({s['scored_as']})" for name, s in result["sets"].items()]
    if result.get("not_present"):
        lines.append(f"  not on this machine, so not counted: {', '.join(result['not_present'])}")
    return "\n".join(lines)


def by_set_text(result: dict) -> str:
    """The per-set detail the experiment log keeps: 'human-seg 0.9120/0.7000; pennfudan ...' (mean IoU/boundary)."""
    return "; ".join(f"{name} {s['mean_iou']:.4f}/{s['mean_boundary_iou']:.4f}" for name, s in result["sets"].items())
