"""The quality estimator's calibration: Spearman, the flag's catch rate for the worst tenth and its flagged share,
per set, written to reports/quality/<model>/ and shown in docs/results.md."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import photo_folders, save_tiny_checkpoint
from test_predict_quality import toy_estimator

from seglib.data.external import external_set
from seglib.infra.errors import SeglibError
from seglib.predict.quality_model import sidecar_path
from seglib.studies import quality_calibration
from seglib.studies.quality_calibration import (
    CALIBRATION_CSV,
    CALIBRATION_JSON,
    PER_PHOTO_CSV,
    calibrate,
    calibration_row,
    model_name,
    results_section,
)


def test_a_perfect_ranking_has_spearman_one_and_the_catch_rate_counts_the_worst_tenth():
    iou = np.linspace(0.5, 0.99, 20)
    table = pd.DataFrame({"set": "s", "iou": iou, "predicted_iou": iou * 0.9,
                          "check": np.arange(20) < 3})  # flags the three worst
    row = calibration_row(table, val_tenth_iou=0.6)
    assert row["spearman"] == pytest.approx(1.0)
    assert row["worst_tenth"] == 2 and row["catch_rate"] == 1.0 and row["flagged_share"] == pytest.approx(0.15)
    assert row["below_val_tenth"] == pytest.approx(np.mean(iou <= 0.6))
    flipped = calibration_row(table.assign(check=np.arange(20) >= 17), 0.6)
    assert flipped["catch_rate"] == 0.0


def test_the_model_is_named_by_its_folder(tmp_path):
    assert model_name(tmp_path / "reference" / "best.pt") == "reference"
    assert model_name(tmp_path / "r1" / "last.pt") == "r1-last"


def test_calibrate_writes_the_study_and_the_results_page_shows_it(tmp_path, monkeypatch):
    checkpoint = save_tiny_checkpoint(tmp_path / "m" / "best.pt", input_size=32)
    toy_estimator(checkpoint).save(sidecar_path(checkpoint))
    images, masks = photo_folders(tmp_path / "set", n=12)
    pairs = external_set(f"{images}:{masks}")
    monkeypatch.setattr(quality_calibration, "scored_sets", lambda record: [pairs])
    out = tmp_path / "reports" / "quality" / "m"
    table = calibrate(checkpoint, out=out)
    assert list(table["set"]) == [pairs.name] and table["photos"].iloc[0] == 12
    assert {CALIBRATION_CSV, CALIBRATION_JSON, PER_PHOTO_CSV} <= {p.name for p in out.iterdir()}
    per_photo = pd.read_csv(out / PER_PHOTO_CSV)
    assert len(per_photo) == 12 and per_photo["iou"].between(0, 1).all()
    data = json.loads((out / CALIBRATION_JSON).read_text())
    assert data["command"].endswith("--quality") and data["sets"][0]["photos"] == 12
    page = results_section(tmp_path)
    assert pairs.name in page and "Spearman" in page and page.startswith("## ")
    assert "No quality calibration" in results_section(tmp_path / "none")


def test_a_checkpoint_without_an_estimator_cannot_be_calibrated(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "m" / "best.pt", input_size=32)
    with pytest.raises(SeglibError, match="no quality estimator"):
        calibrate(checkpoint, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
