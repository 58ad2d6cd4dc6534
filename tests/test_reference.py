"""The committed reference run: its checkpoint reproduces the test score that the README states (slow)."""

from __future__ import annotations

import json

import pytest

from seglib.evaluate import EvalOptions, evaluate_run
from seglib.infra.paths import PROJECT_ROOT

REFERENCE = PROJECT_ROOT / "reports" / "reference"


@pytest.mark.slow
def test_committed_checkpoint_reproduces_the_stated_test_score(real_dataset, tmp_path):
    saved = json.loads((REFERENCE / "metrics" / "test_metrics.json").read_text())
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"**{saved['mean_iou']:.3f} (" in readme  # the results table's test column
    result = evaluate_run(split="test", checkpoint=REFERENCE / "best.pt", out_dir=tmp_path,
                          dataset_dir=real_dataset,
                          options=EvalOptions(tta=saved["tta"], progress=False, n_boot=200))
    assert result.metrics["threshold"] == saved["threshold"]
    assert result.metrics["image_ids_sha1"] == saved["image_ids_sha1"]
    assert result.metrics["mean_iou"] == pytest.approx(saved["mean_iou"], abs=1e-4)


@pytest.mark.slow
def test_onnx_export_of_the_reference_scores_the_same_on_test(real_dataset, tmp_path):
    """Export -> ONNX Runtime gives the PyTorch test mean IoU to 3 decimals on the 44 test photos (issue #15)."""
    from seglib.evaluate import collect_probabilities, score_records
    from seglib.export import export_onnx
    from seglib.predict import Predictor

    saved = json.loads((REFERENCE / "metrics" / "test_metrics.json").read_text())
    onnx_file = export_onnx(REFERENCE / "best.pt", tmp_path / "reference.onnx").path
    scores = {}
    for name, predictor in (("pytorch", Predictor.from_checkpoint(REFERENCE / "best.pt", tta=saved["tta"])),
                            ("onnxruntime", Predictor.from_onnx(onnx_file, tta=saved["tta"]))):
        records = collect_probabilities(predictor, "test", real_dataset, progress=False)
        scores[name] = score_records(records, saved["threshold"])["iou"].mean()
    assert scores["pytorch"] == pytest.approx(saved["mean_iou"], abs=1e-4)
    assert round(scores["onnxruntime"], 3) == round(scores["pytorch"], 3), scores
