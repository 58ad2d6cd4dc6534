"""The predicted IoU of every mask and the flag "check this mask", from the estimator fitted on val photos.

The estimator (`seglib.predict.quality_model`) lives beside its checkpoint as `<stem>.quality.json`
(`sidecar_path`), with the checkpoint's SHA-256, so that one fitted for another checkpoint (a run trained on) is
never used. `seglib evaluate` refits it after scoring val (`refit_sidecar`); `estimator_for` loads it, or fits it
from the checkpoint's val photos when it is missing, else says in one line that predicted IoUs stay empty.
`seglib predict` writes `quality.csv` beside the masks (`write_quality_table`); `quality_table(predictor_or_checkpoint,
photos)` gives the same table for any photos without writing masks (`seglib label` ranks photos by it).
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd

import seglib
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import write_text_atomic
from seglib.infra.paths import display_path
from seglib.predict.quality_features import FEATURES, PLAIN_FEATURES, FlipProbe, mask_features
from seglib.predict.quality_model import (
    CHECK,
    MIN_VAL_PHOTOS,
    PLAIN_MODEL,
    PREDICTED_IOU,
    TTA_MODEL,
    WORST_SHARE,
    QualityEstimator,
    fit_quality_model,
    sidecar_path,
)

logger = logging.getLogger(__name__)

QUALITY_TABLE = "quality.csv"  # the table `seglib predict` writes beside the masks
PHOTO, MASK = "photo", "mask"
TABLE_COLUMNS = (PHOTO, MASK, PREDICTED_IOU, CHECK, *FEATURES)
AUTO_ESTIMATOR = "auto"  # predict_files: the estimator beside the predictor's checkpoint


class NoValPhotos(DataError):
    """The checkpoint records no val photos: no estimator can ever be fitted for it."""


def file_sha256(path: str | Path) -> str:
    from seglib.predict.runtimes import checkpoint_sha256

    return checkpoint_sha256(Path(path))


def model_file_of(predictor) -> Path | None:
    """The checkpoint (or ONNX) file a Predictor was loaded from, when its `source` names one; else None."""
    from seglib.infra.paths import PROJECT_ROOT

    source = str(getattr(predictor, "source", "") or "")
    names = dict.fromkeys((source, source.removesuffix(" in ONNX Runtime"))) if source else {}  # runtimes' wording
    for candidate in (folder / name for name in names for folder in (Path(), PROJECT_ROOT)):
        if candidate.is_file():
            return candidate
    return None


def probed(predictor, tta: bool, threshold: float | None = None):
    """A copy of `predictor` with flip TTA on or off; with it on, its network reports each photo's flip IoU
    (`FlipProbe`) at `threshold` (default: the predictor's). The probabilities are the predictor's own."""
    twin = copy.copy(predictor)
    twin.tta = bool(tta)
    if tta:
        network = predictor.network.network if isinstance(predictor.network, FlipProbe) else predictor.network
        twin.network = FlipProbe(network, predictor.threshold if threshold is None else threshold)
    return twin


def probed_proba(twin, rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(probabilities, flip IoU or None) of one photo by a `probed` predictor."""
    probe = twin.network if isinstance(twin.network, FlipProbe) else None
    if probe is not None:
        probe.start()
    prob = twin.predict_proba(rgb)
    return prob, probe.first_flip_iou() if probe is not None else None


def photo_features(twin, rgb: np.ndarray) -> tuple[np.ndarray, dict]:
    """(probabilities, features) of one photo by a `probed` predictor, at its threshold."""
    prob, flip = probed_proba(twin, rgb)
    return prob, mask_features(prob, twin.threshold, flip)


def val_pairs(checkpoint: dict, dataset_dir=None, splits_dir=None) -> pd.DataFrame:
    """The val photos the checkpoint records (its `data_split`'s val ids, none of its train ids), with their files
    and mask rules, from the split files of the sets it trained on; a DataError when it records none or the data
    is not here."""
    from seglib.data.selection import open_sets, trained_sets

    record = checkpoint.get("data_split") or {}
    val_ids = {str(i) for i in record.get("val_ids", [])}
    if not val_ids:
        raise NoValPhotos("the checkpoint records no val photos")
    sets = open_sets(",".join(trained_sets(record)), dataset_dir=dataset_dir, splits_dir=splits_dir)
    table = sets.table("val")
    train = {str(i) for i in record.get("train_ids", [])}
    ids = table["id"].astype(str)
    return table[ids.isin(val_ids) & ~ids.isin(train)].reset_index(drop=True)


def fit_estimator(predictor, model_file: str | Path | None = None, *, dataset_dir=None, splits_dir=None,
                  progress: bool = False) -> QualityEstimator:
    """Fit both models on the checkpoint's val photos (each predicted with and without flip TTA at the
    predictor's threshold); `model_file` is recorded (name, SHA-256) so the sidecar is used for that file only."""
    from tqdm.auto import tqdm

    from seglib.data.dataset import load_item
    from seglib.metrics import image_scores

    items = val_pairs(_split_record(predictor, model_file), dataset_dir, splits_dir)
    if len(items) < MIN_VAL_PHOTOS:
        raise SeglibError(f"{len(items)} val photos: a quality estimator needs at least {MIN_VAL_PHOTOS}")
    logger.info(f"quality: fitting the quality estimator on {len(items)} val photos")
    rows = {TTA_MODEL: [], PLAIN_MODEL: []}
    ious = {TTA_MODEL: [], PLAIN_MODEL: []}
    twins = {TTA_MODEL: probed(predictor, True), PLAIN_MODEL: probed(predictor, False)}
    for row in tqdm(list(items.itertuples(index=False)), desc="quality: val", disable=not progress, leave=False):
        try:
            rgb, mask = load_item(row)
        except DataError as exc:
            logger.warning(f"skipped {exc}")
            continue
        for key, twin in twins.items():
            prob, feats = photo_features(twin, rgb)
            rows[key].append(feats)
            ious[key].append(image_scores(prob >= twin.threshold, mask.astype(bool))["iou"])
    models = {TTA_MODEL: fit_quality_model(pd.DataFrame(rows[TTA_MODEL]), ious[TTA_MODEL], FEATURES),
              PLAIN_MODEL: fit_quality_model(pd.DataFrame(rows[PLAIN_MODEL]), ious[PLAIN_MODEL], PLAIN_FEATURES)}
    facts = {"model_file": Path(model_file).name if model_file else "",
             "model_sha256": file_sha256(model_file) if model_file else "",
             "epoch": predictor.checkpoint.get("epoch"), "threshold": float(predictor.threshold),
             "levers": _levers(predictor), "fitted_on": "val",
             "val_photos": len(ious[TTA_MODEL]), "worst_share": WORST_SHARE,
             "seglib_version": seglib.__version__,
             "fitted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    return QualityEstimator(models, facts)


def _split_record(predictor, model_file) -> dict:
    """The checkpoint facts that hold its `data_split` record: the predictor's, else (an ONNX export of it keeps no
    record) the checkpoint file's."""
    if predictor.checkpoint.get("data_split") or model_file is None or Path(model_file).suffix != ".pt":
        return predictor.checkpoint
    from seglib.checkpoint import load_checkpoint

    return load_checkpoint(model_file)


def _levers(predictor) -> str:
    """The prediction-time levers the estimator was fitted with, in words ("" for none)."""
    inference = getattr(predictor, "inference", None)
    return inference.describe() if inference is not None else ""


def saved_estimator(model_file: str | Path) -> QualityEstimator | None:
    """The sidecar of `model_file` when it is there and was fitted for this very file; else None (an unreadable
    or stale one is said in one line)."""
    path = sidecar_path(model_file)
    if not path.is_file():
        return None
    try:
        estimator = QualityEstimator.load(path)
    except SeglibError as exc:
        logger.warning(f"quality: {exc}; fitting it again")
        return None
    if estimator.facts.get("model_sha256") != file_sha256(model_file):
        logger.info(f"quality: {display_path(path)} was fitted for another version of {Path(model_file).name}")
        return None
    return estimator


def estimator_for(predictor, model_file: str | Path | None, *, fit: bool = True, save: bool = True,
                  dataset_dir=None, splits_dir=None) -> QualityEstimator | None:
    """The quality estimator of `model_file`: its sidecar, else (with `fit`) one fitted now on the checkpoint's
    val photos and saved as its sidecar (with `save`, where the folder may be written); None, said in one line,
    when there is none to be had: predicted IoUs are then left empty. Never raises for a missing estimator."""
    if model_file is not None:
        found = saved_estimator(model_file)
        if found is not None:
            return found
    why = "no model file to keep it beside" if model_file is None else "fitting is off"
    if fit and model_file is not None and _no_val_photos(model_file).is_file():
        fit, why = False, "its checkpoint records no val photos"
    if fit and model_file is not None:
        try:
            estimator = fit_estimator(predictor, model_file, dataset_dir=dataset_dir, splits_dir=splits_dir)
        except NoValPhotos as exc:  # for good: remembered, so that a later run need not load the checkpoint again
            why = str(exc)
            _remember_no_val_photos(model_file)
        except (SeglibError, OSError, ValueError) as exc:  # never a crash for want of an estimator
            why = f"cannot fit one on its val photos ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        else:
            if save:
                _save_quietly(estimator, sidecar_path(model_file))
            return estimator
    logger.info(f"quality: no quality estimator for {predictor.source or 'this model'}: {why}; "
                "predicted_iou is left empty")
    return None


def _no_val_photos(model_file: str | Path) -> Path:
    """The cache's note that this checkpoint (by its bytes) records no val photos: with an ONNX export cached, a
    later `predict` then runs without torch, as it does with a sidecar."""
    from seglib.predict.runtimes import cache_dir

    return cache_dir() / "quality" / f"{file_sha256(model_file)[:20]}.no-val-photos"


def _remember_no_val_photos(model_file: str | Path) -> None:
    try:
        path = _no_val_photos(model_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # a cache that cannot be written: the next run looks again
        pass


def _save_quietly(estimator: QualityEstimator, path: Path) -> None:
    """Save the sidecar; a folder that cannot be written keeps it in memory for this run, said in one line."""
    try:
        estimator.save(path)
    except OSError as exc:
        logger.warning(f"quality: cannot save {display_path(path)} ({exc.strerror or exc}); used for this run only")
    else:
        logger.info(f"quality: wrote {display_path(path)}")


def refit_sidecar(model_file: str | Path, *, device: str = "auto", dataset_dir=None, splits_dir=None,
                  progress: bool = False) -> Path:
    """Fit the estimator of a checkpoint on its val photos, with the threshold and TTA chosen on val, and write
    it beside the checkpoint (replacing an earlier one): what `seglib evaluate` does after scoring val."""
    from seglib.infra.devices import resolve_device
    from seglib.predict.predictor import Predictor

    predictor = Predictor.from_checkpoint(model_file, device=resolve_device(device))
    estimator = fit_estimator(predictor, model_file, dataset_dir=dataset_dir, splits_dir=splits_dir,
                              progress=progress)
    return estimator.save(sidecar_path(model_file))


def current_sidecar(model_file: str | Path) -> Path | None:
    """The sidecar of `model_file` when it was fitted for this very file at the threshold a refit would use now
    (the one chosen on val), else None: what `seglib evaluate` keeps rather than refits."""
    from seglib.predict.predictor import Predictor

    estimator = saved_estimator(model_file)
    if estimator is None:
        return None
    threshold = Predictor.from_checkpoint(model_file, device="cpu").threshold
    return sidecar_path(model_file) if estimator.facts.get("threshold") == float(threshold) else None


def empty_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (photo, mask, features) as a table with every column in order, predicted_iou empty, check False."""
    table = pd.DataFrame(rows)
    for column in TABLE_COLUMNS:
        if column not in table:
            table[column] = False if column == CHECK else np.nan
    return table[list(TABLE_COLUMNS)]


def scored_table(rows: list[dict], estimator: QualityEstimator | None, tta: bool) -> pd.DataFrame:
    """The table of `rows` with the predicted IoU and the flag of `estimator`'s model for masks with (or without)
    flip TTA; left empty without an estimator."""
    table = empty_table(rows)
    return estimator.score(table, tta) if estimator is not None else table


def is_quality_table(path: Path) -> bool:
    """Whether the file at `path` is a table `seglib predict` wrote (its header starts with our columns)."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return header[:4] == list(TABLE_COLUMNS[:4])


def refuse_foreign_table(out_dir: str | Path, overwrite: bool) -> None:
    """SeglibError, one line, when `out_dir` holds a quality.csv that predict did not write (it would be replaced)
    and `overwrite` is off; predict's own table is merged with, never refused."""
    path = Path(out_dir) / QUALITY_TABLE
    if path.exists() and not overwrite and not is_quality_table(path):
        raise SeglibError(f"{path}: already exists and is not a table seglib predict wrote; refusing to overwrite "
                          "it (pass --overwrite to replace, or choose another --out)")


def write_quality_table(out_dir: str | Path, table: pd.DataFrame) -> Path:
    """Write `table` as `out_dir`/quality.csv, atomically; the rows of an earlier table there (predict into the same
    folder before) are kept for the masks this table does not name, so it describes every mask in the folder."""
    path = Path(out_dir) / QUALITY_TABLE
    if path.exists() and is_quality_table(path):
        try:
            earlier = pd.read_csv(path, dtype={PHOTO: str, MASK: str})
        except (OSError, ValueError, pd.errors.ParserError):
            earlier = None
        if earlier is not None:
            kept = earlier[~earlier[MASK].isin(set(table[MASK]))]
            table = pd.concat([kept.reindex(columns=list(TABLE_COLUMNS)), table], ignore_index=True)
    write_text_atomic(path, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    return path


def describe_table(table: pd.DataFrame, estimator: QualityEstimator | None, tta: bool) -> str:
    """One line on the table: how many masks the flag marks for checking, or why predicted IoUs are empty."""
    model = estimator.model_for(tta) if estimator is not None else None
    if model is None or table.empty:
        return f"{len(table)} row{'s' if len(table) != 1 else ''}, predicted IoU empty (no quality estimator)"
    flagged = int(table[CHECK].sum())
    return (f"{flagged} of {len(table)} masks flagged to check (predicted IoU <= {model.cut:.3f}, the cut that best "
            f"separates the worst tenth of {model.val_photos} val photos from the rest; it flagged "
            f"{model.val_flagged_share:.0%} of them)")


def quality_table(predictor_or_checkpoint, photos, *, estimator: QualityEstimator | None = None,
                  model_file: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """Predicted IoU and the check flag of each photo (files or folders; videos are left out): a DataFrame with
    photo (path), predicted_iou (NaN without an estimator), check and the features, in input order. A photo that
    cannot be decoded is skipped with one logged line and has no row. `predictor_or_checkpoint`: a `Predictor`,
    or a checkpoint path (loaded with the threshold and TTA chosen on val). The estimator: as given, else that of
    `model_file` (a checkpoint path given is its own; by default the file the predictor was loaded from), fitted on
    its val photos if it has none (`estimator_for`)."""
    from tqdm.auto import tqdm

    from seglib.predict.inputs import collect_inputs, is_video, load_input

    predictor = predictor_or_checkpoint
    if isinstance(predictor, str | Path):
        from seglib.infra.devices import resolve_device
        from seglib.predict.predictor import Predictor

        model_file = Path(predictor)
        predictor = Predictor.from_checkpoint(model_file, device=resolve_device("auto"))
    if estimator is None:
        estimator = estimator_for(predictor, model_file if model_file is not None else model_file_of(predictor))
    twin = probed(predictor, predictor.tta)
    rows = []
    for path in tqdm([p for p in collect_inputs(photos) if not is_video(p)], desc="quality", disable=not progress):
        try:
            rgb, _ = load_input(path)
        except DataError as exc:
            logger.warning(f"skipped {exc if str(exc).startswith(str(path)) else f'{path}: {exc}'}")
            continue
        rows.append({PHOTO: str(path), **photo_features(twin, rgb)[1]})
    return scored_table(rows, estimator, predictor.tta).drop(columns=[MASK])
