"""seglib.studies.bench: the tables `make bench` writes, and its prediction part run on a tiny model and a few photos
(how it times, scores and reports; the speeds themselves are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_checkpoint

from seglib.checkpoint import load_checkpoint
from seglib.evaluate import collect_probabilities, score_records
from seglib.infra.errors import SeglibError
from seglib.predict import Predictor
from seglib.studies.anchors import default_python
from seglib.studies.bench import (
    MEDIAPIPE,
    ONNX,
    ONNX_FAST,
    ONNX_ONE_PASS,
    ONNX_SMALL,
    PYTORCH,
    markdown_table,
    prediction,
    prediction_findings,
    run_all,
    target_checks,
    val_protocol,
)


def report(ours_ips=10.0, theirs_ips=4.0, pipeline=300.0, predict_ms=20.0):
    ours = {"train_images_per_second": ours_ips, "pipeline_images_per_second": pipeline,
            "predict_ms_per_640x480_photo": predict_ms, "peak_rss_mib": 500, "parameters": 2_000_000,
            "input_size": 128}
    theirs = {**ours, "train_images_per_second": theirs_ips, "predict_ms_per_640x480_photo": 80.0}
    return {"results": {"ours (cpu profile)": ours, "course solution": theirs},
            "ratios_ours_over_theirs": {"train_images_per_second": ours_ips / theirs_ips,
                                        "predict_speedup": 80.0 / predict_ms,
                                        "pipeline_over_training_ours": pipeline / ours_ips},
            "machine": {"cpu_count": 2, "platform": "test"}, "generated": "now"}


def test_targets_met_and_missed():
    r = report()
    assert [ok for *_, ok in target_checks(r["ratios_ours_over_theirs"], r["results"]["ours (cpu profile)"])] \
        == [True, True, True]
    r = report(ours_ips=5.0, theirs_ips=4.0, pipeline=12.0, predict_ms=60.0)
    assert [ok for *_, ok in target_checks(r["ratios_ours_over_theirs"], r["results"]["ours (cpu profile)"])] \
        == [False, False, False]


def test_markdown_table_names_both_configurations_and_the_targets():
    text = markdown_table(report(ours_ips=5.0, theirs_ips=4.0))
    assert "| training images/s | 5.0 | 4.0 |" in text
    assert "| our training vs the course configuration | 1.25x | no (>= 1.5x) |" in text
    assert "| predict per 640x480 photo | 20.0 ms | yes (<= 50 ms) |" in text


# ------------------------------------------------------------------------------ prediction side by side

PREVIOUS_TRAINING = {**report(), "generated": "earlier", "train_steps": 8, "predict_runs": 20}


def publish(checkpoint, *, threshold=0.4, tta=True, epoch=1):
    """A val evaluation of `checkpoint` where `make publish-reference` puts it."""
    metrics = checkpoint.parent / "metrics" / "val_metrics.json"
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text(json.dumps({"threshold": threshold, "tta": tta, "checkpoint_epoch": epoch,
                                   "checkpoint": "runs/x/best.pt"}))
    return metrics


def test_prediction_part_times_scores_and_keeps_the_training_numbers(synthetic_splits, tmp_path):
    data, splits = synthetic_splits
    checkpoint = save_tiny_checkpoint(tmp_path / "model" / "best.pt", input_size=32)
    publish(checkpoint)
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text(json.dumps(PREVIOUS_TRAINING))
    missing = tmp_path / "no-env" / "python"
    result = run_all(out_dir=out, parts=("prediction",), checkpoint=checkpoint, photos=1,
                     mediapipe_python=missing, dataset_dir=data, splits_dir=splits, fast_checkpoint=checkpoint)
    part = result["prediction"]
    assert result["results"] == PREVIOUS_TRAINING["results"] and result["generated"] == "earlier"
    assert json.loads((out / "bench.json").read_text()) == json.loads(json.dumps(result))
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md"]  # atomic: no temporary files left
    rows = part["models"]
    assert list(rows) == [PYTORCH, ONNX, ONNX_ONE_PASS, ONNX_SMALL, ONNX_FAST, MEDIAPIPE] and part["n_photos"] == 1
    assert rows[ONNX_FAST]["runtime"].endswith("1 thread") and rows[ONNX_FAST]["tta"]  # its own val protocol
    assert rows[ONNX_SMALL]["input"].startswith("256x256") and not rows[ONNX_SMALL]["tta"]
    assert rows[ONNX_SMALL]["flops_per_photo"] > rows[ONNX_ONE_PASS]["flops_per_photo"]  # 256 px vs the 32 px trained
    for name in (PYTORCH, ONNX, ONNX_ONE_PASS, ONNX_SMALL, ONNX_FAST):
        row = rows[name]
        assert row["status"] == "measured" and row["n_photos"] == 1 and len(row["ms_per_photo"]) == 1
        assert 0 < row["ms_median"] <= row["ms_p90"] and row["threshold"] == 0.4
        assert row["parameters"] > 0 and row["flops_per_photo"] == row["flops_per_pass"] * (2 if row["tta"] else 1)
    assert rows[PYTORCH]["tta"] and rows[ONNX]["tta"] and not rows[ONNX_ONE_PASS]["tta"]
    # the mean IoU is seglib evaluate's for this checkpoint with the val threshold and TTA
    predictor = Predictor.from_checkpoint(checkpoint, tta=True, threshold=0.4)
    records = collect_probabilities(predictor, "test", data, splits, limit=1, progress=False)
    assert rows[PYTORCH]["mean_iou"] == pytest.approx(score_records(records, 0.4)["iou"].mean(), abs=1e-12)
    assert part["parity"]["equal_to_3_decimals"] and part["parity"]["onnxruntime_mean_iou"] == pytest.approx(
        rows[PYTORCH]["mean_iou"], abs=5e-4)
    assert rows[MEDIAPIPE]["status"] == "skipped" and str(missing) in rows[MEDIAPIPE]["reason"]
    assert rows[MEDIAPIPE]["input"].startswith("256x256") and rows[MEDIAPIPE]["parameters"] == 106_401
    text = (out / "bench.md").read_text()
    assert "| training images/s | 10.0 | 4.0 |" in text  # the training table is still there
    assert "Prediction side by side: 1 test photos" in text and "equal to 3 decimals" in text
    assert f"MediaPipe skipped: {missing}" in text and "| MediaPipe off the shelf |" in text


def test_mediapipe_times_leave_out_its_warm_up(synthetic_splits, tmp_path, monkeypatch):
    """Its worker's first call (graph initialisation) is run on a copy of the first photo and not counted."""
    data, splits = synthetic_splits
    calls = []

    class FakeMediaPipe:
        threshold, tta, source = 0.5, False, "fake"

        def __init__(self, python=None):
            self.seconds = []

        def facts(self):
            return {}

        def predict_proba_batch(self, images):
            calls.append(len(images))
            self.seconds += [1.0] + [0.004 + 0.002 * i for i in range(len(images) - 1)]
            return [np.full(image.shape[:2], 0.9, np.float32) for image in images]

    monkeypatch.setattr(prediction, "MediaPipePredictor", FakeMediaPipe)
    row = prediction._mediapipe_row(None, "test", None, data, splits)
    assert calls == [3]  # the two test photos and the warm-up copy, in one worker
    assert row["status"] == "measured" and row["n_photos"] == 2
    assert row["ms_median"] == pytest.approx(5.0) and row["ms_p90"] == pytest.approx(5.8)
    assert 0 < row["mean_iou"] < 1  # everything called a person: the IoU is the foreground fraction


def test_findings_say_how_far_ours_is_from_mediapipe():
    row = {"status": "measured", "tta": True, "input": "448x448 (letterboxed)", "flops_per_photo": 6e8}
    part = {"parity": {"onnxruntime_mean_iou": 0.91131, "pytorch_mean_iou": 0.91128, "equal_to_3_decimals": True,
                       "export_max_abs_logit_diff": 1e-3},
            "models": {ONNX: {**row, "ms_median": 25.0, "mean_iou": 0.911},
                       ONNX_ONE_PASS: {**row, "tta": False, "ms_median": 12.5, "mean_iou": 0.905},
                       MEDIAPIPE: {**row, "tta": False, "input": "256x256", "flops_per_photo": 1e8,
                                   "ms_median": 5.0, "mean_iou": 0.867}}}
    parity, speed, one_pass = prediction_findings(part)
    assert "ONNX Runtime 0.9113, in PyTorch 0.9113: equal to 3 decimals" in parity
    assert "5.0x MediaPipe's time (5.0 ms), at +0.044 mean IoU" in speed and "6.0x MediaPipe's FLOPs" in speed
    assert "12.5 ms per photo, 2.5x MediaPipe's time, mean IoU 0.905 (+0.038 over MediaPipe)" in one_pass
    part["models"][ONNX]["ms_median"] = 4.0
    assert "1.2x faster than MediaPipe" in prediction_findings(part)[1]


def test_threshold_and_tta_come_from_this_checkpoints_val_evaluation(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=5)
    state = load_checkpoint(checkpoint)
    assert val_protocol(checkpoint, state)[:3] == (state["threshold"], False,
                                                   "stored in the checkpoint (no val evaluation of it found)")
    publish(checkpoint, threshold=0.35, tta=True, epoch=4)  # another epoch: not this checkpoint's
    assert val_protocol(checkpoint, state)[:2] == (state["threshold"], False)
    run_val = checkpoint.parent / "eval" / "val" / "metrics.json"  # a run's own val evaluation comes first
    run_val.parent.mkdir(parents=True)
    run_val.write_text(json.dumps({"threshold": 0.55, "tta": False, "checkpoint_epoch": 5}))
    assert val_protocol(checkpoint, state)[:4] == (0.55, False, f"chosen on val, {run_val}", True)
    with pytest.raises(SeglibError, match="photos 0: give at least 1"):
        prediction.compare_predictions(checkpoint, photos=0)
    with pytest.raises(SeglibError, match="bench parts"):
        run_all(out_dir=tmp_path / "out", parts=("speed",))
    with pytest.raises(SeglibError, match="missing.pt: checkpoint not found"):
        run_all(out_dir=tmp_path / "out", checkpoint=tmp_path / "missing.pt")  # before the training part runs
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not default_python().is_file(), reason="no .venv-mediapipe (make mediapipe-anchor)")
def test_real_mediapipe_worker_is_timed(synthetic_splits):
    data, splits = synthetic_splits
    row = prediction._mediapipe_row(None, "test", 1, data, splits)
    assert row["status"] == "measured" and row["n_photos"] == 1 and 0 < row["ms_median"] < 1000


@pytest.mark.parametrize("decode_every_time", [False, True])
def test_the_training_part_times_the_parts_and_loaders_the_engine_trains_with(decode_every_time, synthetic_splits,
                                                                               monkeypatch):
    """`measure` builds its model, loss, optimiser and schedule with `training_parts.build_parts` (weight decay
    and all) and reads photos as training does, cached or decoded every time."""
    from seglib.studies.bench import measure
    from seglib.training import parts as training_parts

    data, splits = synthetic_splits
    built, build_parts = [], training_parts.build_parts

    def recording(cfg, *args, **kwargs):
        built.append(parts := build_parts(cfg, *args, **kwargs))
        return parts

    monkeypatch.setattr(training_parts, "build_parts", recording)
    tiny = {"input_size": 32, "batch_size": 2, "base_channels": 4, "depth": 2, "cache_max_side": 64, "threads": 1,
            "limit_train": 0, "limit_val": 0, "weight_decay": 0.01}
    row = measure("smoke", tiny, train_steps=1, predict_runs=1, dataset_dir=data, splits_dir=splits,
                  decode_every_time=decode_every_time)
    assert len(built) == 1 and built[0].optimizer.param_groups[0]["weight_decay"] == 0.01
    assert row["parameters"] == sum(p.numel() for p in built[0].model.parameters())
    assert row["pipeline_cached"] is not decode_every_time
    assert row["train_images_per_second"] > 0 and row["predict_ms_per_640x480_photo"] > 0


def test_the_folder_benchmark_states_each_load_and_each_models_ratio_to_mediapipe():
    from seglib.studies.bench.folder import command_name, one_core_busy, paired_against
    from seglib.studies.bench.sections import folder_markdown

    ref, small = command_name(Path("reports/reference/best.pt")), command_name(Path("reports/reference-256/best.pt"))
    assert (ref, small) == ("seglib predict, reference", "seglib predict, reference-256")
    assert command_name(Path("reports/reference/best.pt"), ("--no-tta",)) == "seglib predict, reference, --no-tta"
    mp = "MediaPipe 0.10.21"
    seconds = {"idle": {ref: 6.0, small: 4.4, mp: 4.0}, "one core busy": {ref: 10.0, small: 5.0, mp: 4.0}}
    result = {"photos": 170, "folder": "Penn-Fudan PNGImages", "machine": {"cpu_count": 2, "platform": "Linux"},
              "commands": {ref: "seglib predict --checkpoint reports/reference/best.pt FOLDER --out DIR",
                           small: "seglib predict --checkpoint reports/reference-256/best.pt FOLDER --out DIR"},
              "repeats": 2, "mean_iou": {ref: 0.83, small: 0.75, mp: 0.74},
              "vs_mediapipe": {small: paired_against([0.8, 0.7, 0.75], [0.7, 0.72, 0.74])},
              "loads": {load: {name: {"seconds": s, "ms_per_photo": 1000 * s / 170, "first_line_s": 0.3}
                               for name, s in row.items()} for load, row in seconds.items()}}
    text = folder_markdown(result)
    assert "- idle, seglib predict, reference: 1.50x MediaPipe's time, at +0.090 mean IoU on the same photos." in text
    # the paired difference where there is one (the same photos), not the difference of means over other photos
    assert "- idle, seglib predict, reference-256: 1.10x MediaPipe's time, at +0.030 mean IoU on the same photos." in text
    assert "- one core busy, seglib predict, reference: 2.50x MediaPipe's time" in text
    assert "| idle | seglib predict, reference | 6.0 | 35.3 | 0.30 | 0.830 (170) |" in text
    assert "| idle | MediaPipe 0.10.21 | 4.0 | 23.5 | – | 0.740 (170) |" in text
    assert "| idle | seglib predict, reference-256 | 4.4 | 25.9 | 0.30 | 0.750 (24) |" in folder_markdown(
        result | {"scored_photos": {ref: 170, small: 24}})
    assert "`seglib predict --checkpoint reports/reference-256/best.pt FOLDER --out DIR`" in text
    assert "- seglib predict, reference-256 against MediaPipe photo by photo: IoU +0.030 (95% bootstrap interval " in text
    assert "better on 2 of 3 photos." in text
    with one_core_busy(True):
        pass  # started and stopped: nothing left spinning


def test_the_folder_benchmark_scores_a_model_only_on_photos_it_did_not_train_or_validate_on():
    """The checkpoint's record decides (issue #37: the default trained on Penn-Fudan's train split)."""
    from types import SimpleNamespace

    import pandas as pd

    from seglib.data.selection import seen_photos

    pairs = SimpleNamespace(dataset="pennfudan", items=pd.DataFrame({"id": ["a", "b", "c", "d"]}))
    record = {"datasets": ["human-seg", "pennfudan"], "train_ids": ["human-seg/1", "pennfudan/a"],
              "val_ids": ["pennfudan/b"]}
    assert seen_photos(record, pairs) == {"a", "b"}
    assert seen_photos({"datasets": ["human-seg"], "train_ids": ["1"], "val_ids": ["2"]}, pairs) == set()
    assert seen_photos(None, pairs) == set()
