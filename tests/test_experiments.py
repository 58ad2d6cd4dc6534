"""seglib.experiments: the committed experiment log."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from seglib.errors import SeglibError
from seglib.experiments import COLUMNS, record
from seglib.settings import make_config


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
