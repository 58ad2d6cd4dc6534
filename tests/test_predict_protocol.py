"""Prediction uses the protocol the reported scores used: the threshold and flip TTA chosen on val for this
very checkpoint, found beside it (a run's eval/val, a published metrics/ folder) or recorded in its ONNX export;
what is given wins, and `describe` says where each came from. The committed reference, predicted with the
command's defaults, scores the published test mean IoU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_checkpoint
from PIL import Image

from seglib.infra import paths
from seglib.predict import Predictor

REFERENCE = paths.PROJECT_ROOT / "reports" / "reference"


def val_evaluation(run_dir: Path, *, threshold: float, tta: bool, epoch: int, name: str = "best.pt") -> Path:
    path = run_dir / "eval" / "val" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"threshold": threshold, "tta": tta, "checkpoint": f"runs/x/{name}",
                                "checkpoint_epoch": epoch}))
    return path


def test_the_threshold_and_tta_chosen_on_val_are_the_default_and_what_is_given_wins(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=3)
    (tmp_path / "run" / "last.pt").write_bytes(checkpoint.read_bytes())
    plain = Predictor.from_checkpoint(checkpoint)
    assert (plain.threshold, plain.tta) == (0.5, False)
    assert "threshold 0.5 (stored in the checkpoint)" in plain.describe() and "flip TTA off (default)" in \
        plain.describe()
    val_evaluation(tmp_path / "run", threshold=0.35, tta=True, epoch=3)
    chosen = Predictor.from_checkpoint(checkpoint)
    assert (chosen.threshold, chosen.tta) == (0.35, True)
    assert "threshold 0.35 (chosen on val" in chosen.describe() and "flip TTA on (as on val)" in chosen.describe()
    without_tta = Predictor.from_checkpoint(checkpoint, tta=False)  # val's threshold was chosen with TTA
    assert (without_tta.threshold, without_tta.tta) == (0.5, False)
    given = Predictor.from_checkpoint(checkpoint, threshold=0.6)
    assert (given.threshold, given.tta) == (0.6, True)
    assert Predictor.from_run(tmp_path / "run").threshold == 0.35
    assert Predictor.from_run(tmp_path / "run", which="last").tta is False  # val evaluated best.pt, not last.pt
    val_evaluation(tmp_path / "run", threshold=0.35, tta=True, epoch=2)  # another epoch: not this checkpoint's
    assert Predictor.from_checkpoint(checkpoint).threshold == 0.5


def test_an_onnx_export_carries_the_val_protocol_to_predict(tmp_path):
    pytest.importorskip("onnxruntime")
    from seglib.export import export_onnx

    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=3, input_size=64)
    val_evaluation(tmp_path / "run", threshold=0.4, tta=True, epoch=3)
    exported = export_onnx(checkpoint, tmp_path / "model.onnx").path
    predictor = Predictor.from_onnx(exported)
    assert (predictor.threshold, predictor.tta) == (0.4, True)
    assert "recorded in the export" in predictor.threshold_source


def test_predict_with_its_defaults_reproduces_the_published_test_score(tmp_path, real_dataset, capsys):
    """`seglib predict --checkpoint reports/reference/best.pt` on the test photos, scored against their masks,
    gives the test mean IoU of reports/reference/metrics/test_metrics.json (the README's number)."""
    from seglib.cli import main
    from seglib.data.dataset import load_item
    from seglib.evaluate.records import split_items
    from seglib.metrics import iou

    published = json.loads((REFERENCE / "metrics" / "test_metrics.json").read_text())
    items = split_items("test", real_dataset)
    out = tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(REFERENCE / "best.pt"), *items["image_path"].astype(str),
                 "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"threshold {published['threshold']:g} (chosen on val" in said and "flip TTA on (as on val)" in said
    scores = []
    for row in items.itertuples(index=False):
        truth = load_item(row)[1]
        with Image.open(out / f"{Path(row.image_path).stem}.mask.png") as predicted:  # scored at mask resolution
            pred = np.asarray(predicted.resize(truth.shape[::-1], Image.NEAREST)) > 127
        scores.append(iou(pred, truth))
    assert len(scores) == published["n_images"]
    assert round(float(np.mean(scores)), 3) == round(published["mean_iou"], 3), (np.mean(scores),
                                                                                 published["mean_iou"])
