"""seglib.studies.anchors: the MediaPipe anchor is scored like a model (its worker is faked here; it needs numpy<2)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from seglib.cli import main
from seglib.infra.errors import SeglibError
from seglib.studies import anchors

# Stands in for mediapipe_worker.py: "person" = bright pixels (the synthetic figures are bright ellipses); as Pose
# ("pose"), it finds no person on the first photo of each batch and answers an all-zero mask there.
FAKE_WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import cv2, numpy as np
    folder = Path(sys.argv[1])
    assert sys.argv[2] in ("0", "1", "pose")
    found = []
    for png in sorted(folder.glob("*.png"), key=lambda p: int(p.stem)):
        rgb = cv2.imread(str(png))[..., ::-1]
        found.append(sys.argv[2] != "pose" or png.stem != "0")
        prob = (rgb.mean(axis=2) > 100).astype(np.float32) * found[-1]
        np.save(folder / f"{png.stem}.npy", prob)
    (folder / "times.json").write_text(json.dumps([0.004] * len(found)))
    (folder / "found.json").write_text(json.dumps(found))
""")


@pytest.fixture
def fake_worker(tmp_path, monkeypatch):
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    monkeypatch.setattr(anchors, "WORKER", worker)
    return worker


def test_anchor_is_scored_at_mask_resolution_with_threshold_half(synthetic_splits, tmp_path, fake_worker):
    folder, splits = synthetic_splits
    results = anchors.score_anchor(out_dir=tmp_path / "anchor", python=sys.executable, dataset_dir=folder,
                                   splits_dir=splits, progress=False)
    for split in ("val", "test"):
        saved = json.loads((tmp_path / "anchor" / split / "metrics.json").read_text())
        assert saved["threshold"] == 0.5 and saved["threshold_source"] == "checkpoint"
        assert saved["model"] == "mediapipe-selfie" and "off the shelf" in saved["weights"]
        assert saved["mediapipe_ms_per_image_median"] == 4.0
        assert saved["mean_iou"] > 0.9  # the stand-in is nearly right on synthetic figures
        assert saved["baselines"]["all-foreground"]["mean_iou"] < saved["mean_iou"]
        assert (results[split].per_image["height"] > 0).all()
    with pytest.raises(SeglibError, match="test is already scored"):
        anchors.score_anchor(("test",), out_dir=tmp_path / "anchor", python=sys.executable, dataset_dir=folder,
                             splits_dir=splits, progress=False)


def test_missing_environment_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "python"
    from seglib.cli import main

    assert main(["anchor", "--python", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"seglib: error: {missing}: no mediapipe environment; run `make mediapipe-anchor`")
    assert len(err.splitlines()) == 1


def test_worker_failure_is_reported(tmp_path, monkeypatch):
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit('mediapipe: cannot load the model')")
    monkeypatch.setattr(anchors, "WORKER", broken)
    predictor = anchors.MediaPipePredictor(sys.executable)

    with pytest.raises(SeglibError, match="worker .* failed: mediapipe: cannot load the model"):
        predictor.predict_proba_batch([np.zeros((8, 8, 3), np.uint8)])


def test_anchor_row_joins_a_table_only_for_the_same_images(synthetic_splits, tmp_path, fake_worker):
    from seglib.evaluate import headline_from_metrics

    folder, splits = synthetic_splits
    results = anchors.score_anchor(("test",), out_dir=tmp_path / "anchor", python=sys.executable,
                                   dataset_dir=folder, splits_dir=splits, progress=False)
    run_metrics = dict(results["test"].metrics)  # stands in for a model scored on the same test images
    table = headline_from_metrics(run_metrics)
    joined = anchors.with_anchor(table, run_metrics, out_dir=tmp_path / "anchor")
    assert list(joined.index[:2]) == ["model", anchors.ANCHOR_ROW] and len(joined) == len(table) + 1
    other = {**run_metrics, "image_ids_sha1": "another-list"}
    assert anchors.with_anchor(table, other, out_dir=tmp_path / "anchor").equals(table)
    assert anchors.with_anchor(table, {**run_metrics, "split": "val"}, out_dir=tmp_path / "anchor").equals(table)


def test_paired_difference_is_photo_by_photo_on_the_same_images(synthetic_splits, tmp_path, fake_worker):
    folder, splits = synthetic_splits
    results = anchors.score_anchor(("test",), out_dir=tmp_path / "anchor", python=sys.executable,
                                   dataset_dir=folder, splits_dir=splits, progress=False)
    theirs = results["test"]
    ours = theirs.per_image[["id", "iou"]].copy()
    ours["iou"] = (ours["iou"] + 0.1).clip(upper=1.0)
    ours.loc[ours.index[0], "iou"] = theirs.per_image["iou"].iloc[0] - 0.2  # one photo where we do worse
    diff = anchors.paired_difference(ours, theirs.metrics, out_dir=tmp_path / "anchor", n_boot=200)
    expected = (ours["iou"].to_numpy() - theirs.per_image["iou"].to_numpy()).mean()
    assert diff["n_images"] == len(ours) and diff["mean_difference"] == pytest.approx(expected, abs=1e-5)  # CSV rounding
    assert diff["anchor_better"] == 1 and diff["model_better"] == (ours["iou"] > theirs.per_image["iou"]).sum()
    assert diff["ci95"][0] - 1e-5 <= expected <= diff["ci95"][1] + 1e-5
    other = {**theirs.metrics, "image_ids_sha1": "another-list"}
    assert anchors.paired_difference(ours, other, out_dir=tmp_path / "anchor") is None
    assert anchors.paired_difference(ours.iloc[1:], theirs.metrics, out_dir=tmp_path / "anchor") is None


def test_a_python_that_is_not_executable_is_one_line(tmp_path, capsys):
    from seglib.cli import main

    plain = tmp_path / "python"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    assert main(["anchor", "--python", str(plain), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"seglib: error: {plain}: not executable; give the mediapipe environment's python "
                           "(.venv-mediapipe/bin/python, made by `make mediapipe-anchor`) or chmod +x it")
    assert not (tmp_path / "o").exists()


def test_a_python_that_cannot_be_run_is_a_seglib_error(tmp_path):
    garbage = tmp_path / "python"
    garbage.write_bytes(b"\x00\x01 not an interpreter")
    garbage.chmod(0o755)
    predictor = anchors.MediaPipePredictor(garbage)
    with pytest.raises(SeglibError, match=rf"{garbage}: cannot be run as the mediapipe python \(Exec format error\)"):
        predictor.predict_proba_batch([np.zeros((8, 8, 3), np.uint8)])


def test_pose_is_scored_like_the_selfie_model_and_counts_the_photos_without_a_person(synthetic_splits, tmp_path,
                                                                                      fake_worker):
    folder, splits = synthetic_splits
    results = anchors.score_anchor(("val",), model=anchors.POSE, out_dir=tmp_path / "pose", python=sys.executable,
                                   dataset_dir=folder, splits_dir=splits, progress=False)
    saved = json.loads((tmp_path / "pose" / "val" / "metrics.json").read_text())
    assert saved["model"] == anchors.MEDIAPIPE_POSE and "pose_landmark_full.tflite" in saved["weights"]
    assert "Apache-2.0" in saved["weights"] and saved["threshold"] == 0.5
    assert saved[anchors.NO_POSE] == 1  # one batch: its first photo had no person found
    first = results["val"].per_image.iloc[0]
    assert first["fg_fraction_pred"] == 0 and first["iou"] == 0  # the all-zero mask, scored as such
    with pytest.raises(SeglibError, match="MediaPipe model 'hands'"):
        anchors.MediaPipePredictor(sys.executable, model="hands")


@pytest.fixture
def registered_set(tmp_path, monkeypatch, capsys):
    """One tiny registered set with a split (`syn`), as `seglib data add` and `data split` make it."""
    from conftest import photo_folders

    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    images, masks = photo_folders(tmp_path / "syn", n=14, scale_every=0)
    assert main(["data", "add", "syn", "--images", str(images), "--masks", str(masks)]) == 0
    assert main(["data", "split", "syn", "--folds", "0"]) == 0
    capsys.readouterr()
    return tmp_path


def test_anchor_scores_both_models_on_a_registered_set_s_splits_and_keeps_what_is_scored(registered_set, tmp_path,
                                                                                       fake_worker, capsys):
    out = tmp_path / "anchors"
    argv = ["anchor", "--python", sys.executable, "--out", str(out), "--dataset", "syn"]
    assert main(argv) == 0
    for folder in (anchors.MEDIAPIPE_SELFIE, anchors.MEDIAPIPE_POSE):
        for split in ("syn-val", "syn-test"):
            saved = json.loads((out / folder / split / "metrics.json").read_text())
            assert saved["split"] == split and saved["threshold"] == 0.5
            assert (anchors.NO_POSE in saved) == (folder == anchors.MEDIAPIPE_POSE)
    printed = capsys.readouterr().out
    assert "MediaPipe Pose's person mask, syn-test:" in printed and "no person found on 1" in printed
    scores, metrics = anchors.anchor_scores(anchors.POSE, "syn", "test", out)
    assert metrics["split"] == "syn-test" and list(scores.columns) == ["id", "iou", "boundary_iou"]
    assert main([*argv, "--model", "pose", "--split", "test"]) == 0  # scored already: kept, said so
    assert capsys.readouterr().out.strip() == (f"MediaPipe Pose's person mask, syn-test: already scored in "
                                               f"{out / anchors.MEDIAPIPE_POSE / 'syn-test'}; kept (--overwrite "
                                               "scores it again)")
