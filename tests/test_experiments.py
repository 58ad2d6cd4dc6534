"""seglib.studies.experiments: the committed experiment log."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.profiles import make_config
from seglib.studies.experiments import COLUMNS, fold_table, read_log, record, unscored, val_table


def fake_run(root, name, *, val=0.8, val_tta=None, test=None, ema=0.0):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(make_config("cpu", {"ema_decay": ema}).to_dict()))
    (run / "train_summary.json").write_text(json.dumps({
        "epochs_run": 50, "train_seconds": 1200.0, "images_per_second": 9.5, "best_epoch": 47,
        "best_val_iou": val - 0.01, "device": "cpu"}))
    for folder, split, value, tta in (("eval", "val", val, False), ("eval-tta", "val", val_tta, True),
                                      ("eval", "test", test, False)):
        if value is not None:
            (run / folder / split).mkdir(parents=True)
            (run / folder / split / "metrics.json").write_text(json.dumps({
                "mean_iou": value, "pooled_iou": value + 0.01, "threshold": 0.5, "tta": tta,
                "mean_iou_ci95": [value - 0.05, value + 0.05]}))
    return run


def test_rows_are_added_replaced_and_old_rows_kept(tmp_path):
    log = tmp_path / "experiments.csv"
    pd.DataFrame([{"run": "old", "val_mean_iou": "0.5", "notes": "from an older log"}]).to_csv(log, index=False)
    a = fake_run(tmp_path / "runs", "a", val=0.8, val_tta=0.82, ema=0.99)
    record([a], notes="first try", path=log)
    table = pd.read_csv(log)
    assert list(table.columns) == COLUMNS
    assert table["run"].tolist() == ["old", "a"]
    row = table.set_index("run").loc["a"]
    assert row["val_mean_iou"] == 0.8 and row["val_mean_iou_tta"] == 0.82 and row["ema_decay"] == 0.99
    assert pd.isna(row["test_mean_iou"]) and row["train_minutes"] == 20.0 and row["notes"] == "first try"
    (a / "eval" / "test").mkdir()
    (a / "eval" / "test" / "metrics.json").write_text(json.dumps({"mean_iou": 0.7, "tta": True,
                                                                   "mean_iou_ci95": [0.65, 0.75]}))
    record([a], path=log)  # no new notes: the old ones stay
    row = pd.read_csv(log).set_index("run").loc["a"]
    assert row["val_mean_iou"] == 0.8 and row["val_mean_iou_tta"] == 0.82
    assert row["test_mean_iou"] == 0.7 and row["test_mean_iou_ci95"] == "0.6500 - 0.7500"
    assert bool(row["test_tta"]) and row["notes"] == "first try"
    assert len(pd.read_csv(log)) == 2


def test_unfinished_run_is_refused(tmp_path):
    run = tmp_path / "half"
    run.mkdir()
    with pytest.raises(SeglibError, match="no train_summary.json"):
        record([run], path=tmp_path / "log.csv")


def test_plain_and_tta_val_are_found_whichever_folder_holds_them(tmp_path):
    run = fake_run(tmp_path / "runs", "b", val=0.84)
    for folder, value, tta in (("eval", 0.84, True), ("eval-notta", 0.83, False)):
        (run / folder / "val").mkdir(parents=True, exist_ok=True)
        (run / folder / "val" / "metrics.json").write_text(json.dumps({"mean_iou": value, "tta": tta}))
    record([run], path=tmp_path / "log.csv")
    row = pd.read_csv(tmp_path / "log.csv").iloc[0]
    assert (row["val_mean_iou"], row["val_mean_iou_tta"]) == (0.83, 0.84)


def write_log(path, rows):
    pd.DataFrame([{c: row.get(c, "") for c in COLUMNS} for row in rows]).to_csv(path, index=False)


def test_log_splits_into_fold_rows_by_device_val_rows_and_unscored_rows(tmp_path):
    gpu = "cuda (NVIDIA H100 80GB HBM3)"
    write_log(tmp_path / "log.csv", [
        {"run": "old-val", "val_mean_iou": "0.93", "test_mean_iou": "0.91", "device": "cpu"},
        {"run": "a-cpu", "cv_folds": "5", "cv_mean_iou_tta": "0.9065", "cv_sd": "0.0162", "device": "cpu"},
        {"run": "b-cpu", "cv_folds": "5", "cv_mean_iou_tta": "0.9075", "cv_sd": "0.0123", "device": "cpu"},
        {"run": "c-gpu", "cv_folds": "5", "cv_mean_iou_tta": "0.9023", "cv_sd": "0.017", "device": gpu},
        {"run": "stopped-cpu", "cv_folds": "1", "cv_mean_iou_tta": "0.95", "cv_sd": "0.0", "device": "cpu"},
        {"run": "planned", "device": gpu, "notes": "not started"},
    ])
    log = read_log(tmp_path / "log.csv")
    folds = fold_table(log)
    assert folds.index.tolist() == [("cpu", "stopped-cpu"), ("cpu", "b-cpu"), ("cpu", "a-cpu"), (gpu, "c-gpu")]
    # measured against its own device's best complete recipe only; one stopped after a fold is not ranked
    assert folds["minus_best_of_device"].tolist()[1:] == [0.0, -0.001, 0.0]
    assert pd.isna(folds.loc[("cpu", "stopped-cpu"), "minus_best_of_device"])
    assert folds.loc[("cpu", "stopped-cpu"), "fold_mean_iou"] == "0.9500 (1 fold)"
    assert folds.loc[("cpu", "b-cpu"), "fold_mean_iou"] == "0.9075 ± 0.0123"
    assert val_table(log).index.tolist() == ["old-val"]
    assert unscored(log).to_dict("index") == {"planned": {"device": gpu, "notes": "not started"}}


def test_missing_log_is_one_line(tmp_path):
    with pytest.raises(SeglibError, match="no experiment log yet"):
        read_log(tmp_path / "none.csv")


def test_committed_log_reads_into_the_three_tables():
    log = read_log(paths.PROJECT_ROOT / "reports" / "experiments.csv")  # make test moves SEGLIB_REPORTS_DIR away
    assert len(fold_table(log)) + len(val_table(log)) + len(unscored(log)) == len(log)
