"""The experiment log, reports/experiments.csv: one row per recipe tried.

Older rows compare runs on the 44 val photos; rows with `cv_folds` compare recipes on the 5 folds of train+val
(`seglib cv`: mean and sd over folds, each fold's score beside them). `seglib experiments RUN [RUN ...]` (re)writes
the rows of those runs from their saved config, training summary and evaluation files. Test IoU is filled in only
where a run's test split was scored, which this workbook does for the chosen recipes only. `fold_table`,
`val_table` and `unscored` split the log into what notebook 04 shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import write_text_atomic
from seglib.models.model_registry import model_entry
from seglib.runs import EVAL, METRICS, Run
from seglib.settings import ADDED_SETTINGS, config_from_dict
from seglib.studies.domains import by_set_text, saved_multi_domain_val

COLUMNS = ["run", "model", "encoder", "encoder_weights", "input_size", "epochs", "batch_size", "augment",
           "dice_weight", "bce_weight", "schedule", "lr", "ema_decay", "train_minutes", "images_per_second",
           "best_epoch", "val_iou_training", "val_mean_iou", "val_pooled_iou", "val_threshold", "val_mean_iou_tta",
           "cv_folds", "cv_mean_iou_tta", "cv_sd", "cv_fold_ious", "cv_boundary_iou", "geometry", "dice_per_image",
           "distill_weight", "data", "composite", "l2sp_weight", "data_weights", "epoch_samples", "ignore_band",
           "teacher_masks", "fill_pinholes", "edge_weight", "lovasz_weight", "val_multi_domain",
           "val_multi_domain_boundary", "val_by_set", "test_mean_iou", "test_mean_iou_ci95", "test_tta", "device",
           "notes"]
# settings added after the log began: rows and runs from before had the value that setting's behaviour had then
NEWER_SETTINGS = tuple(key for key in ADDED_SETTINGS if key in COLUMNS)
DEFAULTS = {key: ADDED_SETTINGS[key][1] for key in NEWER_SETTINGS}


def experiments_path() -> Path:
    """reports/experiments.csv ($SEGLIB_REPORTS_DIR moves it with the other reports)."""
    return paths.reports_dir() / "experiments.csv"


def experiment_row(run_dir: Path, notes: str = "") -> dict:
    """One row from a run folder; val metrics come from `seglib evaluate --split val` (mask resolution)."""
    run = Run.resolve(run_dir)
    summary = run.summary()
    if summary is None:
        raise SeglibError(f"{paths.display_path(run.dir)}: no {run.summary_file.name} (training not finished)")
    cfg = run.config()
    source = paths.display_path(run.config_file)
    val = _val_metrics(run_dir, tta=False)
    val_tta = _val_metrics(run_dir, tta=True)
    test = _metrics(run_dir, "test")
    multi = saved_multi_domain_val(run.eval_root, summary.get("best_epoch"))  # `seglib generality --val RUN`
    return {
        "run": run_dir.name, **_recipe_columns(cfg, source), "epochs": summary["epochs_run"],
        "train_minutes": round(summary["train_seconds"] / 60, 1),
        "images_per_second": round(summary["images_per_second"], 2), "best_epoch": summary["best_epoch"],
        "val_iou_training": round(summary["best_val_iou"], 4),
        "val_mean_iou": _round(val.get("mean_iou")), "val_pooled_iou": _round(val.get("pooled_iou")),
        "val_threshold": val.get("threshold"), "val_mean_iou_tta": _round(val_tta.get("mean_iou")),
        "val_multi_domain": _round(multi["mean_iou"]) if multi else "",
        "val_multi_domain_boundary": _round(multi["mean_boundary_iou"]) if multi else "",
        "val_by_set": by_set_text(multi) if multi else "",
        "test_mean_iou": _round(test.get("mean_iou")),
        "test_mean_iou_ci95": (" - ".join(f"{v:.4f}" for v in test["mean_iou_ci95"])
                               if test.get("mean_iou_ci95") else ""),
        "test_tta": test.get("tta", "") if test else "",
        "device": summary.get("device", ""), "notes": notes,
    }


def variant_row(scores: Path, notes: str = "") -> dict:
    """One row for a model that is not a run folder of its own: an interpolated checkpoint, or a run scored with
    prediction-time levers. `scores`: the `multi_domain_val.json` that `seglib generality --val` wrote for it; the
    recipe comes from the checkpoint it names."""
    from seglib.checkpoint import load_checkpoint

    try:
        multi = json.loads(Path(scores).read_text())
        checkpoint = paths.PROJECT_ROOT / multi["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SeglibError(f"{paths.display_path(scores)}: not a multi-domain val score ({exc})") from None
    state = load_checkpoint(checkpoint)
    return {
        "run": multi["model"], **_recipe_columns(state["config"], paths.display_path(checkpoint)),
        "val_threshold": multi.get("threshold"), "val_multi_domain": _round(multi["mean_iou"]),
        "val_multi_domain_boundary": _round(multi["mean_boundary_iou"]), "val_by_set": by_set_text(multi),
        "notes": notes,
    }


def record_variants(scores: list[Path], notes: str = "", path: Path | None = None) -> pd.DataFrame:
    """Add or replace the rows of `variant_row`s in the experiment log."""
    return _upsert([variant_row(Path(s), notes) for s in scores], notes, path)


def _recipe_columns(saved: dict, source: str) -> dict:
    """The columns that describe a recipe, from its saved settings (older ones filled in by `config_from_dict`)."""
    cfg = config_from_dict(saved, source)
    return {
        "model": cfg.model, "encoder": model_entry(cfg.model).describe(cfg), "encoder_weights": cfg.encoder_weights,
        "input_size": cfg.input_size, "batch_size": cfg.batch_size, "augment": cfg.augment,
        "dice_weight": cfg.dice_weight, "bce_weight": cfg.bce_weight, "schedule": cfg.schedule, "lr": cfg.lr,
        **{key: getattr(cfg, key) for key in NEWER_SETTINGS},
    }


def cv_row(result: dict, notes: str = "") -> dict:
    """One row from a cross-validation result (seglib.studies.crossval): the recipe and its fold scores."""
    return {
        "run": result["recipe"], **_recipe_columns(result["config"], f"cv result {result['recipe']}"),
        "epochs": result["epochs"],
        "train_minutes": _round(result["train_minutes_per_fold"]),
        "images_per_second": _round(result["images_per_second"]),
        "cv_folds": len(result["folds"]), "cv_mean_iou_tta": _round(result["mean_iou"]), "cv_sd": _round(result["sd_iou"]),
        "cv_fold_ious": " ".join(f"{f['mean_iou']:.4f}" for f in result["folds"]),
        "cv_boundary_iou": _round(result["boundary_iou"]),
        "device": result["device"], "notes": notes,
    }


def record(runs: list[str | Path], notes: str = "", path: Path | None = None) -> pd.DataFrame:
    """Add or replace the rows of `runs` (names under runs/, or Path folders) in reports/experiments.csv (or
    `path`); other rows are kept."""
    return _upsert([experiment_row(Run.resolve(run).dir, notes) for run in runs], notes, path)


def record_cv(recipes: list[str], notes: str = "", path: Path | None = None) -> pd.DataFrame:
    """Add or replace the rows of cross-validated `recipes` (reports/cv/RECIPE.json) in the experiment log."""
    from seglib.studies.crossval import load_result

    return _upsert([cv_row(load_result(r), notes) for r in recipes], notes, path)


def _upsert(rows: list[dict], notes: str, path: Path | None) -> pd.DataFrame:
    path = Path(path) if path is not None else experiments_path()
    table = pd.read_csv(path, dtype=str) if path.is_file() else pd.DataFrame(columns=COLUMNS)
    for row in rows:
        kept_notes = table.loc[table["run"] == row["run"], "notes"]
        if not notes and len(kept_notes):
            row["notes"] = kept_notes.iloc[0]
        table = table[table["run"] != row["run"]]
        table = pd.concat([table, pd.DataFrame([row]).astype(str)], ignore_index=True)
    table = table.reindex(columns=COLUMNS)
    write_text_atomic(path, table.to_csv(index=False, lineterminator="\n"))
    return table


def read_log(path: Path | None = None) -> pd.DataFrame:
    """The experiment log as written (every cell a string, blanks blank); a missing log is an error."""
    path = Path(path) if path is not None else experiments_path()
    if not path.is_file():
        raise SeglibError(f"{paths.display_path(path)}: no experiment log yet (`seglib cv` and `seglib experiments` "
                          "write it)")
    log = pd.read_csv(path, dtype=str, keep_default_na=False)
    return log.assign(**{key: "" for key in NEWER_SETTINGS if key not in log.columns})  # rows from before a setting


def fold_table(experiment_log: pd.DataFrame) -> pd.DataFrame:
    """The recipes compared on the folds, grouped by device and best fold mean first, each with its distance to
    the best fold mean of its device (the adoption rule, docs/recipes.md, compares recipes trained on the same device only); a
    recipe stopped before its last fold is listed without a distance."""
    rows = experiment_log[experiment_log["cv_folds"] != ""].copy()
    for key in NEWER_SETTINGS:
        rows[key] = rows[key].replace("", str(DEFAULTS[key]))
    rows["fold_mean"] = pd.to_numeric(rows["cv_mean_iou_tta"])
    rows["n_folds"] = pd.to_numeric(rows["cv_folds"])
    complete = rows["fold_mean"].where(rows["n_folds"] == rows["n_folds"].max())  # stopped early: not ranked
    rows["minus_best_of_device"] = (complete - complete.groupby(rows["device"]).transform("max")).round(4)
    rows = rows.sort_values(["device", "fold_mean"], ascending=[True, False])
    table = pd.DataFrame({
        "device": rows["device"], "recipe": rows["run"], "model": rows["model"], "input_size": rows["input_size"],
        "geometry": rows["geometry"], "epochs": rows["epochs"], "dice_per_image": rows["dice_per_image"],
        "distill_weight": rows["distill_weight"], "composite": rows["composite"],
        "fold_mean_iou": [f"{m:.4f} ± {float(sd):.4f}" if n > 1 else f"{m:.4f} (1 fold)"
                          for m, sd, n in zip(rows["fold_mean"], rows["cv_sd"], rows["n_folds"], strict=True)],
        "minus_best_of_device": rows["minus_best_of_device"], "per_fold": rows["cv_fold_ious"],
        "boundary_iou": rows["cv_boundary_iou"],
        "minutes_per_fold_run": pd.to_numeric(rows["train_minutes"]).round(1),
        "notes": rows["notes"]})
    return table.set_index(["device", "recipe"])


def val_table(experiment_log: pd.DataFrame) -> pd.DataFrame:
    """The runs compared on the 44 val photos (the log's older rows), with test where it was scored."""
    columns = ["run", "model", "encoder", "input_size", "epochs", "augment", "schedule", "lr", "ema_decay",
               "train_minutes", "device", "best_epoch", "val_mean_iou", "val_mean_iou_tta", "val_threshold",
               "test_mean_iou", "test_mean_iou_ci95", "test_tta", "notes"]
    val_or_test = experiment_log[["val_mean_iou", "val_mean_iou_tta", "test_mean_iou"]].ne("").any(axis=1)
    scored = experiment_log[(experiment_log["cv_folds"] == "") & val_or_test]
    return scored[columns].set_index("run")


def unscored(experiment_log: pd.DataFrame) -> pd.DataFrame:
    """Rows recorded without any score (a recipe started or planned but not finished), with the notes saying why."""
    scores = ["cv_mean_iou_tta", "val_mean_iou", "val_mean_iou_tta", "test_mean_iou"]
    return experiment_log.loc[experiment_log[scores].eq("").all(axis=1), ["run", "device", "notes"]].set_index("run")


def _metrics(run_dir: Path, split: str, folder: str = EVAL) -> dict:
    path = run_dir / folder / split / METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def _val_metrics(run_dir: Path, tta: bool) -> dict:
    """The run's val evaluation with or without flip TTA, from eval/ or a side folder (eval-tta/, eval-notta/,
    written with `seglib evaluate --checkpoint CKPT --out RUN/eval-tta --split val [--tta]`, CKPT the run's best
    checkpoint)."""
    for folder in (EVAL, f"{EVAL}-tta", f"{EVAL}-notta"):
        metrics = _metrics(run_dir, "val", folder)
        if metrics and bool(metrics.get("tta")) == tta:
            return metrics
    return {}


def _round(value):
    return "" if value is None else round(float(value), 4)
