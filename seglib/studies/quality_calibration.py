"""How well a checkpoint's predicted IoU ranks its masks, measured where the actual IoU is known.

`calibrate(model_file)` predicts every photo of every registered set's test split, and of the external-check set
(Penn-Fudan) whole where the model did not train on it, with the threshold and TTA chosen on val, and compares the
quality estimator's predicted IoU (`seglib.predict.quality`, fitted on val only) with the actual IoU photo by photo:
the Spearman rank correlation, and for the flag "check this mask" its catch rate (the share of the set's worst
tenth by actual IoU that it flags) beside the share of all photos it flags. `seglib evaluate --quality` writes
`reports/quality/<model>/` (calibration.csv, calibration.json, per_photo.csv); `results_section` is its
section of docs/results.md.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import write_json_atomic, write_text_atomic
from seglib.infra.paths import display_path
from seglib.predict.quality import estimator_for, photo_features, probed
from seglib.predict.quality_model import CHECK, PREDICTED_IOU, worst_tenth
from seglib.runs import BEST

logger = logging.getLogger(__name__)

CALIBRATION_CSV, CALIBRATION_JSON, PER_PHOTO_CSV = "calibration.csv", "calibration.json", "per_photo.csv"
COLUMNS = ["set", "photos", "spearman", "spearman_p", "worst_tenth", "catch_rate", "flagged_share",
           "below_val_tenth", "mean_iou", "mean_predicted_iou", "mean_abs_error"]


def study_dir(model_name: str) -> Path:
    """reports/quality/<model>/ (moved by $SEGLIB_REPORTS_DIR)."""
    return paths.reports_dir() / "quality" / model_name


def model_name(model_file: str | Path) -> str:
    """A checkpoint's name in the reports: its folder's (a run's best checkpoint -> the run's name, the published
    reference -> reference), with the file's stem when it is another file of that folder."""
    model_file = Path(model_file)
    folder = model_file.resolve().parent.name
    return folder if model_file.name == BEST else f"{folder}-{model_file.stem}"


def scored_sets(data_split: dict | None) -> list:
    """The sets calibration is measured on (`PairSet`s): each registered set's test split, then the external-check
    set whole when the model did not train on it; a set whose data or split is not here is passed over, said in
    one line."""
    from seglib.data.descriptions import EXTERNAL_CHECK, registered
    from seglib.data.registry import scored_set
    from seglib.data.selection import check_not_trained_on, split_test_pairs

    found = []
    for name, spec in registered(skip_unreadable=True).items():
        makers = [lambda name=name: split_test_pairs(name)]
        if spec.role == EXTERNAL_CHECK:
            makers.append(lambda name=name: scored_set(name))
        for make in makers:
            try:
                pairs = make()
                check_not_trained_on(data_split, pairs)
            except SeglibError as exc:
                logger.info(f"quality: {name}: passed over ({str(exc).splitlines()[0]})")
                continue
            found.append(pairs)
    return found


def per_photo(predictor, estimator, pairs, progress: bool = False) -> pd.DataFrame:
    """One row per photo of `pairs`: set, id, actual IoU (at mask resolution, the predictor's threshold),
    predicted IoU, check and the features (rounded to four digits when written); a pair that cannot be read is passed over, said in one line."""
    from tqdm.auto import tqdm

    from seglib.metrics import image_scores
    from seglib.predict.quality import MASK, PHOTO, scored_table

    twin = probed(predictor, predictor.tta)
    rows, ious, ids = [], [], []
    for row in tqdm(list(pairs.items.itertuples(index=False)), desc=f"quality {pairs.name}", disable=not progress,
                    leave=False):
        try:
            rgb, mask = pairs.load(Path(row.image_path), Path(row.mask_path))
        except DataError as exc:
            logger.warning(f"skipped {exc}")
            continue
        prob, features = photo_features(twin, rgb)
        rows.append({PHOTO: str(row.image_path), **features})
        ious.append(image_scores(prob >= twin.threshold, mask.astype(bool))["iou"])
        ids.append(str(row.id))
    table = scored_table(rows, estimator, predictor.tta).drop(columns=[PHOTO, MASK])  # the id names the photo
    table.insert(0, "iou", ious)
    table.insert(0, "id", ids)
    table.insert(0, "set", pairs.name)
    return table


def calibration_row(table: pd.DataFrame, val_tenth_iou: float = float("nan")) -> dict:
    """The calibration of one set's `per_photo` table (see the module); `below_val_tenth`: the share of its photos
    whose actual IoU is at most `val_tenth_iou` (as bad as val's worst tenth: what the flag is meant to find)."""
    from scipy.stats import spearmanr

    iou, pred = table["iou"].to_numpy(float), table[PREDICTED_IOU].to_numpy(float)
    flagged = table[CHECK].to_numpy(bool)
    worst = worst_tenth(iou)
    rho, p = spearmanr(pred, iou) if len(iou) > 2 and np.ptp(iou) > 0 and np.ptp(pred) > 0 else (np.nan, np.nan)
    return {"set": table["set"].iloc[0], "photos": len(table), "spearman": float(rho), "spearman_p": float(p),
            "worst_tenth": len(worst), "catch_rate": float(flagged[worst].mean()),
            "flagged_share": float(flagged.mean()), "below_val_tenth": float(np.mean(iou <= val_tenth_iou)),
            "mean_iou": float(iou.mean()),
            "mean_predicted_iou": float(pred.mean()), "mean_abs_error": float(np.abs(pred - iou).mean())}


def calibrate(model_file: str | Path, *, out: str | Path | None = None, device: str = "auto", dataset_dir=None,
              splits_dir=None, progress: bool = False) -> pd.DataFrame:
    """Calibrate the quality estimator of a checkpoint (fitted on its val photos first when it has none) on every
    set of `scored_sets`, and write the study into `out` (default `study_dir(model_name(model_file))`);
    returns the calibration table, one row per set."""
    from seglib.infra.devices import resolve_device
    from seglib.infra.locks import exclusive
    from seglib.predict.predictor import Predictor

    model_file = Path(model_file)
    if not model_file.is_file():
        raise SeglibError(f"{model_file}: checkpoint not found")
    out = Path(out) if out is not None else study_dir(model_name(model_file))
    predictor = Predictor.from_checkpoint(model_file, device=resolve_device(device))
    estimator = estimator_for(predictor, model_file, dataset_dir=dataset_dir, splits_dir=splits_dir)
    if estimator is None:
        raise SeglibError(f"{model_file}: no quality estimator to calibrate (see the line above)")
    record = predictor.checkpoint.get("data_split")
    tables = [per_photo(predictor, estimator, pairs, progress) for pairs in scored_sets(record)]
    tables = [t for t in tables if not t.empty]
    if not tables:
        raise SeglibError("no registered set's photos could be read: nothing to calibrate on")
    model = estimator.model_for(predictor.tta)
    summary = pd.DataFrame([calibration_row(t, model.val_tenth_iou) for t in tables], columns=COLUMNS)
    facts = {"checkpoint": display_path(model_file), "model": model_name(model_file),
             "threshold": predictor.threshold, "tta": bool(predictor.tta), "estimator": estimator.facts,
             "flag_cut": model.cut, "val_tenth_iou": model.val_tenth_iou,
             "command": f"seglib evaluate --checkpoint {display_path(model_file)} --quality",
             "made_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    with exclusive(out, f"quality calibration {display_path(out)}"):
        write_text_atomic(out / PER_PHOTO_CSV, pd.concat(tables, ignore_index=True).to_csv(
            index=False, float_format="%.4g", lineterminator="\n"))
        write_text_atomic(out / CALIBRATION_CSV, summary.to_csv(index=False, float_format="%.4g", lineterminator="\n"))
        write_json_atomic(out / CALIBRATION_JSON, {**facts, "sets": summary.to_dict(orient="records")})
    return summary


def results_section(root: Path | None = None) -> str:
    """docs/results.md's section on the predicted IoU: the committed calibrations (reports/quality/*/
    calibration.json of the project) as tables, or a line saying there is none."""
    import json

    folder = (root if root is not None else paths.PROJECT_ROOT) / "reports" / "quality"
    found = sorted(folder.glob(f"*/{CALIBRATION_JSON}")) if folder.is_dir() else []
    lines = ["## How well the predicted IoU ranks masks",
             "`seglib predict` writes each photo's predicted IoU and a flag \"check this mask\" in `quality.csv` "
             "([predict.md](predict.md#how-good-is-each-mask-qualitycsv)); the estimator is fitted on the model's val "
             "photos only. Here it meets the actual IoU on every registered test split and on the external-check set "
             "whole: Spearman ρ between predicted and actual IoU, the share of each set's worst tenth (by actual IoU) "
             "the flag catches, the share of all photos it flags, and the share whose actual IoU is as low as val's "
             "worst tenth (what the flag looks for).", ""]
    if not found:
        return "\n".join([*lines, "No quality calibration committed yet (`seglib evaluate --checkpoint FILE "
                                  "--quality`)."])
    for path in found:
        data = json.loads(path.read_text(encoding="utf-8"))
        fitted = data.get("estimator", {})
        lines += [f"`{data['checkpoint']}`, threshold {data['threshold']:.2f}, flip TTA "
                  f"{'on' if data['tta'] else 'off'}; estimator fitted on {fitted.get('val_photos', '?')} val photos; "
                  f"flag: predicted IoU ≤ {data['flag_cut']:.3f} (val's worst tenth: actual IoU ≤ "
                  f"{data['val_tenth_iou']:.3f}). From `{display_path(path)}` (`{data['command']}`):", "",
                  "| set | photos | Spearman ρ | worst tenth caught | flagged | as bad as val's worst tenth | mean IoU "
                  "| mean predicted IoU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['set']} | {r['photos']} | {r['spearman']:.2f} | {r['catch_rate']:.0%} of {r['worst_tenth']} | "
                  f"{r['flagged_share']:.0%} | {r['below_val_tenth']:.0%} | {r['mean_iou']:.3f} | "
                  f"{r['mean_predicted_iou']:.3f} |" for r in data["sets"]]
        lines.append("")
    return "\n".join(lines).rstrip("\n")
