"""Does labelling the photos the ranking suggests beat labelling photos at random? A simulation on the folds of
train+val (`seglib label-curve`; the ranking is `seglib.label.suggest.rank_photos`).

Repeat r holds out fold `folds[r % len(folds)]` of data/splits/folds.csv: it scores, and the rest of train+val is
the pool an annotator labels from. `start` pool photos drawn at random are labelled first (the same ones for both
strategies, so the first point is one training); then each step trains the short recipe on the labelled photos
alone (a splits folder of their own in a temporary folder: train.csv the labelled photos, val.csv the held-out
fold, test.csv the set's own test), scores its last epoch on the held-out fold as `seglib cv` scores a fold (mask
resolution, flip TTA, threshold 0.5: nothing is chosen on the photos that score it), and adds `step` photos: the
ones the trained model ranks first (its own uncertainty and diversity), or as many drawn at random. The training
seed is the recipe's plus r, the same for both strategies: their difference at each size is paired.

Each (strategy, repeat, size) result is written as it finishes (results/STRATEGY-rR-nSIZE.json, atomically), with
the photos it trained on and those it picks next, so the same command continues where a stopped one left off;
plan.json keeps the settings the results were made with (other settings are refused unless `overwrite`). The
results are gathered in curve.csv and drawn in curve.png (mean over repeats, a band from the lowest to the
highest repeat).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.data.descriptions import BUILTIN
from seglib.infra import locks, paths
from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.io import atomic_path, write_json_atomic, write_text_atomic
from seglib.label.suggest import DIVERSITY_DEFAULT, UNCERTAINTY_GAIN, rank_photos
from seglib.runs import Run
from seglib.studies.crossval import CV_THRESHOLD, CV_TTA, RUNNING_ONLY, check_folds

logger = logging.getLogger(__name__)

STRATEGIES = RANKED, RANDOM = ("ranked", "random")
RESULTS = "results"  # one JSON per (strategy, repeat, size)
PLAN = "plan.json"
CURVE_CSV = "curve.csv"
FIGURE = "curve.png"
# The short recipe, on top of the profile (cpu: MediaPipe's selfie segmenter fine-tuned): the segmenter's own
# 256 px input and few epochs, so that one training takes well under a minute on a 2-core CPU (capped by
# max_train_minutes); at 128 px a fine-tune on 20 photos fell far below the segmenter off the shelf. Val (8
# photos of the held-out fold) only logs progress: the last epoch is scored, nothing is chosen on it.
# the short recipe each step trains, on this set's photos alone (whatever sets the profile trains on)
CURVE_RECIPE = dict(input_size=256, cache_max_side=320, epochs=15, max_train_minutes=1.0, limit_val=8, data=BUILTIN,
                    data_weights="", epoch_samples=0)
ADDED_COLUMNS = ("image_path", "mask_path", "mask_rule", "dataset")  # what `open_sets` adds to a split file's rows
CURVE_COLUMNS = ["strategy", "labelled", "repeat", "fold", "mean_iou", "boundary_iou", "n_scored", "epochs_run",
                 "train_seconds"]


@dataclass(frozen=True)
class CurvePlan:
    """The simulation's shape: labelled sizes start, start + step, ... (`steps` of them), `repeats` repeats
    holding out folds[r % len(folds)] (every fold of folds.csv when empty)."""

    start: int = 20
    step: int = 20
    steps: int = 5
    repeats: int = 5
    folds: tuple[int, ...] = ()
    diversity: float = DIVERSITY_DEFAULT
    seed: int = 0  # of the random draws (the first photos, the random strategy's picks)

    def sizes(self) -> list[int]:
        return [self.start + k * self.step for k in range(self.steps)]

    def check(self) -> None:
        for name in ("start", "step", "steps", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be 1 or more")
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"diversity={self.diversity}: must be between 0 and 1")


@dataclass
class Simulation:
    """One simulation as `simulate` set it up: what each repeat works on."""

    cfg: object  # TrainConfig
    plan: CurvePlan
    folder: Path
    sets: object  # data.selection.SetSplits of cfg.data
    folds: list[int]
    dataset_dir: object = None


def curve_dir() -> Path:
    """reports/label_curve/ ($SEGLIB_REPORTS_DIR moves it with the other reports)."""
    return paths.reports_dir() / "label_curve"


def curve_config(profile: str = "cpu", overrides: dict | None = None):
    """The recipe each step trains: the profile, CURVE_RECIPE, then `overrides`; every labelled photo trains
    (limit_train 0), on the train/val split the simulation writes (no fold of its own)."""
    from seglib.profiles import make_config

    cfg = make_config(profile, {**CURVE_RECIPE, **(overrides or {})})
    return cfg.replace(limit_train=0, fold=-1, inner_fold=-1, train_on="train")


def simulate(cfg, plan: CurvePlan, *, out_dir=None, overwrite: bool = False, dataset_dir=None,
             splits_dir=None) -> pd.DataFrame:
    """Run (or continue) the simulation; returns curve.csv's table. Results already saved are kept, unless
    `overwrite` or they were made with other settings (then refused in one line)."""
    from seglib.data.selection import open_sets
    from seglib.data.splits import fold_numbers

    plan.check()
    folder = Path(out_dir) if out_dir is not None else curve_dir()
    with locks.reentrant(locks.output_folder(folder), f"label curve {paths.display_path(folder)}"):
        sets = open_sets(cfg.data, dataset_dir=dataset_dir, splits_dir=splits_dir,
                         during="the label-curve simulation read it")
        if len(sets.specs) > 1:
            raise ConfigError(f"data={cfg.data}: the simulation labels the photos of one set; name one")
        sim = Simulation(cfg, plan, folder, sets, check_folds(list(plan.folds) or None, fold_numbers(sets.folder)),
                         dataset_dir)
        check_plan(folder, cfg, plan, overwrite)
        try:
            for repeat in range(plan.repeats):
                simulate_repeat(sim, repeat)
        except KeyboardInterrupt:
            logger.info("label curve: stopped; run the same command again to continue (finished steps are kept)")
            raise
        finally:
            table = write_curve(folder) if (folder / RESULTS).is_dir() else None
    return table


def check_plan(folder: Path, cfg, plan: CurvePlan, overwrite: bool) -> None:
    """plan.json: written for new results; saved results of other settings are refused, or removed when
    `overwrite`."""
    wanted = plan_record(cfg, plan)
    saved_path = folder / PLAN
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    if saved is not None and saved != wanted and not overwrite:
        differ = [key for key in sorted({*saved.get("plan", {}), *wanted["plan"]})
                  if saved.get("plan", {}).get(key) != wanted["plan"].get(key)]
        differ += [key for key in wanted["config"] if saved.get("config", {}).get(key) != wanted["config"][key]]
        raise SeglibError(f"{paths.display_path(saved_path)}: its results were made with other settings "
                          f"({', '.join(differ[:5]) or 'another layout'}); pass --overwrite to start again, or "
                          "--out another folder")
    if overwrite:
        for old in sorted((folder / RESULTS).glob("*.json")):
            old.unlink()
    write_json_atomic(saved_path, wanted)


def plan_record(cfg, plan: CurvePlan) -> dict:
    """What the results depend on: the plan and the recipe's settings. Not how many sizes and repeats (a result
    does not depend on how many follow it: more --steps or --repeats add to the saved ones), nor how training
    ran (threads, workers)."""
    record = {k: v for k, v in dataclasses.asdict(plan).items() if k not in ("steps", "repeats")}
    record["folds"] = list(plan.folds)
    return {"plan": record, "config": {k: v for k, v in cfg.to_dict().items() if k not in RUNNING_ONLY}}


def result_path(folder: Path, strategy: str, repeat: int, size: int) -> Path:
    return folder / RESULTS / f"{strategy}-r{repeat}-n{size}.json"


def read_result(folder: Path, strategy: str, repeat: int, size: int) -> dict | None:
    path = result_path(folder, strategy, repeat, size)
    return json.loads(path.read_text()) if path.is_file() else None


def simulate_repeat(sim: Simulation, repeat: int) -> None:
    """Every size of both strategies in repeat `repeat`, size by size (a stopped run leaves both lines at the same
    length); strategies that label the same photos (the first size) share one training."""
    plan = sim.plan
    fold = sim.folds[repeat % len(sim.folds)]
    pool, held_out = sim.sets.fold_split(fold)
    if plan.sizes()[-1] > len(pool):
        raise ConfigError(f"fold {fold}: its pool holds {len(pool)} photos, fewer than the {plan.sizes()[-1]} the "
                          "last step labels; lower --start, --step or --steps")
    first = sorted(np.random.default_rng([plan.seed, repeat]).choice(pool["id"].astype(str).to_numpy(), plan.start,
                                                                     replace=False).tolist())
    labelled = dict.fromkeys(STRATEGIES, first)
    for size in plan.sizes():
        saved = {s: read_result(sim.folder, s, repeat, size) for s in STRATEGIES}
        groups: dict[tuple, list[str]] = {}
        for strategy in STRATEGIES:
            if saved[strategy] is None:
                groups.setdefault(tuple(labelled[strategy]), []).append(strategy)
        for ids, strategies in groups.items():
            saved.update(run_step(sim, repeat, fold, list(ids), strategies, pool, held_out))
        for strategy in STRATEGIES:
            labelled[strategy] = sorted(saved[strategy]["labelled"] + saved[strategy]["next"])


def run_step(sim: Simulation, repeat: int, fold: int, ids: list[str], strategies: list[str], pool: pd.DataFrame,
             held_out: pd.DataFrame) -> dict[str, dict]:
    """Train on the photos `ids`, score on the held-out fold, pick each strategy's next photos (at the last size
    too, so that a later run with more --steps goes on from it); each strategy's result written at once."""
    from seglib.predict import Predictor
    from seglib.training.engine import train

    with tempfile.TemporaryDirectory(prefix="seglib-label-curve-") as tmp:
        splits = write_splits(Path(tmp) / "splits", pool[pool["id"].astype(str).isin(ids)], held_out,
                              sim.sets.table("test"))
        run = Run(Path(tmp) / "run")
        trained = train(sim.cfg.replace(seed=sim.cfg.seed + repeat), run, dataset_dir=sim.dataset_dir,
                        splits_dir=splits, progress=False)
        if trained.stop_reason == "interrupted":
            raise KeyboardInterrupt
        predictor = Predictor.from_checkpoint(run.require("last"), tta=CV_TTA, threshold=CV_THRESHOLD)
        score = score_held_out(predictor, held_out, fold)
        out = {}
        for strategy in strategies:
            picks = pick_next(sim, strategy, predictor, pool, ids, repeat)
            out[strategy] = {"strategy": strategy, "repeat": repeat, "fold": fold, "labelled": ids, "next": picks,
                             **score, "epochs_run": trained.epochs_run,
                             "train_seconds": round(trained.train_seconds, 1)}
            write_json_atomic(result_path(sim.folder, strategy, repeat, len(ids)), out[strategy])
            logger.info(f"label curve: repeat {repeat} (fold {fold}), {strategy}, {len(ids)} labelled: mean IoU "
                        f"{score['mean_iou']:.4f} ({trained.train_seconds:.0f} s training)")
    return out


def write_splits(folder: Path, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> Path:
    """A splits folder of train.csv, val.csv and test.csv holding these rows, in the split files' own columns."""
    folder.mkdir(parents=True)
    for name, table in (("train", train), ("val", val), ("test", test)):
        table.drop(columns=[c for c in ADDED_COLUMNS if c in table.columns]).to_csv(folder / f"{name}.csv",
                                                                                     index=False)
    return folder


def score_held_out(predictor, held_out: pd.DataFrame, fold: int) -> dict:
    """Mean IoU and boundary IoU on the held-out fold's photos (as `crossval.score_on_fold` scores a fold)."""
    from seglib.data.dataset import split_rows
    from seglib.data.external import PairSet
    from seglib.evaluate.records import collect_probabilities
    from seglib.evaluate.scoring import score_records

    rule = str(held_out["mask_rule"].iloc[0]) if "mask_rule" in held_out.columns else "binary"
    pairs = PairSet(f"fold {fold}", split_rows(held_out)[["id", "image_path", "mask_path"]], rule)
    table = score_records(collect_probabilities(predictor, pairs, progress=False), CV_THRESHOLD)
    return {"mean_iou": round(float(table["iou"].mean()), 4),
            "boundary_iou": round(float(table["boundary_iou"].mean()), 4), "n_scored": len(table)}


def pick_next(sim: Simulation, strategy: str, predictor, pool: pd.DataFrame, labelled: list[str],
              repeat: int) -> list[str]:
    """The `step` pool photos a strategy labels next: the ranking's first (the model's uncertainty: a short
    fine-tune has no quality estimate; photos like the labelled ones held back), or a seeded random draw."""
    candidates = pool[~pool["id"].astype(str).isin(labelled)]
    n = min(sim.plan.step, len(candidates))
    if n == 0:
        return []
    if strategy == RANDOM:
        rng = np.random.default_rng([sim.plan.seed, repeat, len(labelled)])
        return sorted(rng.choice(candidates["id"].astype(str).to_numpy(), n, replace=False).tolist())
    ranked = rank_photos(predictor, candidates["image_path"].tolist(), n=n, diversity=sim.plan.diversity,
                         gain=UNCERTAINTY_GAIN,
                         labelled=pool.loc[pool["id"].astype(str).isin(labelled), "image_path"].tolist())
    if ranked.attrs["skipped"]:
        raise SeglibError(f"label curve: {len(ranked.attrs['skipped'])} pool photo(s) cannot be read "
                          f"({ranked.attrs['skipped'][0][0]}); run `seglib data check`")
    id_of = dict(zip(candidates["image_path"].astype(str), candidates["id"].astype(str), strict=True))
    return sorted(id_of[photo] for photo in ranked["photo"])


def read_results(folder: Path) -> pd.DataFrame:
    """Every saved result of `folder` as curve.csv's rows, by strategy, size and repeat."""
    rows = []
    for path in sorted((Path(folder) / RESULTS).glob("*.json")):
        saved = json.loads(path.read_text())
        rows.append({**{k: saved.get(k) for k in CURVE_COLUMNS if k != "labelled"},
                     "labelled": len(saved["labelled"])})
    table = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    return table.sort_values(["strategy", "labelled", "repeat"]).reset_index(drop=True)


def write_curve(folder: Path) -> pd.DataFrame:
    """curve.csv and curve.png from the saved results, written atomically; returns the table."""
    table = read_results(folder)
    write_text_atomic(Path(folder) / CURVE_CSV, table.to_csv(index=False, lineterminator="\n"))
    if len(table):
        figure = plot_curve(table)
        with atomic_path(Path(folder) / FIGURE) as tmp:
            figure.savefig(tmp, format="png")
    return table


def read_curve(folder=None) -> pd.DataFrame | None:
    """curve.csv of `folder` (default reports/label_curve), None when the simulation has not been run."""
    path = Path(folder if folder is not None else curve_dir()) / CURVE_CSV
    return pd.read_csv(path) if path.is_file() else None


def curve_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and labelled size: mean, sd, lowest and highest mean IoU over the repeats, and their count."""
    grouped = table.groupby(["strategy", "labelled"])["mean_iou"]
    return grouped.agg(mean="mean", sd="std", low="min", high="max", repeats="count").reset_index()


def paired_differences(table: pd.DataFrame) -> pd.DataFrame:
    """Per labelled size: ranked minus random mean IoU, repeat by repeat (same fold, same training seed), averaged
    over the repeats both strategies finished."""
    wide = table.pivot_table(index=["labelled", "repeat"], columns="strategy", values="mean_iou")
    if not set(STRATEGIES) <= set(wide.columns):
        return pd.DataFrame(columns=["labelled", "difference", "ranked_better", "repeats"])
    diff = (wide[RANKED] - wide[RANDOM]).dropna()
    return diff.groupby(level="labelled").agg(difference="mean", ranked_better=lambda d: int((d > 0).sum()),
                                              repeats="count").reset_index()


def labels_to_reach(table: pd.DataFrame) -> dict:
    """Random's mean IoU at its largest size (the target), and the fewest labels with which each strategy's mean
    reaches it (None where it never does within the sizes simulated)."""
    summary = curve_summary(table)
    random = summary[summary["strategy"] == RANDOM]
    if random.empty:
        return {"target": None, "labels": {}}
    target = float(random.sort_values("labelled")["mean"].iloc[-1])
    labels = {}
    for strategy, rows in summary.groupby("strategy"):
        reached = rows[rows["mean"] >= target - 1e-12].sort_values("labelled")
        labels[strategy] = int(reached["labelled"].iloc[0]) if len(reached) else None
    return {"target": target, "largest": int(random["labelled"].max()), "labels": labels}


def describe_curve(table: pd.DataFrame) -> str:
    """The answer in a few lines: at which size ranked photos reach random photos' final IoU, and the paired
    difference at each size."""
    if table is None or table.empty:
        return "no result yet"
    reach = labels_to_reach(table)
    lines = []
    if reach["target"] is not None:
        ranked = reach["labels"].get(RANKED)
        where = (f"with {ranked} labelled photos" if ranked is not None
                 else f"at no size simulated (up to {int(table['labelled'].max())})")
        lines.append(f"random photos reach mean IoU {reach['target']:.4f} with {reach['largest']} labelled; "
                     f"ranked photos reach it {where}")
    for row in paired_differences(table).itertuples(index=False):
        lines.append(f"{row.labelled} labelled: ranked - random {row.difference:+.4f} mean IoU, ranked better on "
                     f"{row.ranked_better} of {row.repeats} repeat(s)")
    return "\n".join(lines) or "no result yet"


def plot_curve(table: pd.DataFrame):
    """Mean IoU on the held-out fold against labelled photos: a line per strategy (mean over repeats) and a band
    from the lowest to the highest repeat."""
    from seglib.viz.style import new_figure, styled

    @styled
    def draw():
        fig, axes = new_figure(1, 1, width=6.0, height=3.8, squeeze=True)
        summary = curve_summary(table)
        for colour, strategy in zip(("C0", "C1"), STRATEGIES, strict=True):
            rows = summary[summary["strategy"] == strategy].sort_values("labelled")
            if rows.empty:
                continue
            axes.plot(rows["labelled"], rows["mean"], marker="o", color=colour,
                      label=f"{strategy} (mean of {int(rows['repeats'].max())} repeat(s))")
            axes.fill_between(rows["labelled"], rows["low"], rows["high"], color=colour, alpha=0.2, linewidth=0)
        axes.set_xlabel("labelled photos")
        axes.set_ylabel("mean IoU, held-out fold")
        axes.set_title("photos chosen by the ranking vs at random (band: lowest to highest repeat)")
        axes.legend(loc="lower right")
        return fig

    return draw()


def results_section(root: Path) -> str | None:
    """docs/results.md's section on the committed learning curve (None where it is not committed)."""
    table = read_curve(Path(root) / "reports" / "label_curve")
    if table is None or table.empty:
        return None
    repeats = int(table["repeat"].nunique())
    return ("## What to label next: ranked against random photos\nThe labelling simulation (`seglib label-curve`): "
            "on this set's train+val photos, start from 20 labelled photos and add 20 at a time, chosen by `seglib "
            "label suggest`'s ranking (the model's doubt, with diversity) or at random; after each step the short "
            f"recipe trains on them and is scored on a held-out fold; {repeats} repeat(s), each holding out another "
            "fold. Source: `reports/label_curve/curve.csv` (figure: `reports/label_curve/curve.png`, notebook "
            "07).\n\n" + "\n".join(f"- {line}" for line in describe_curve(table).splitlines()))
