"""seglib.evaluate: scoring at mask resolution, the val threshold, test-once, baselines, CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_subcommand, save_tiny_checkpoint
from PIL import Image, ImageDraw

from seglib.cli.evaluate import add_parser
from seglib.data.dataset import load_pair
from seglib.evaluate import (
    BASELINES,
    SWEEP_THRESHOLDS,
    EvalOptions,
    baseline_scores,
    choose_threshold,
    evaluate_run,
    headline_table,
    load_or_evaluate,
    mean_mask_prior,
    predictions_for_split,
    prior_for,
    threshold_sweep,
)
from seglib.infra.errors import DataError, SeglibError
from seglib.predict import Predictor
from seglib.profiles import make_config

NAME = "Human-Segmentation-Dataset-master"
# id -> (image width, image height, mask downscale factor, shape box as fractions of the image)
PAIRS = {
    "1": (40, 30, 1, (0.2, 0.1, 0.6, 0.9)),
    "2": (30, 40, 1, (0.3, 0.2, 0.8, 0.9)),
    "3": (80, 60, 2, (0.25, 0.2, 0.7, 0.95)),  # image 2x its mask (same aspect): scored at 40x30
    "4": (40, 30, 1, (0.1, 0.3, 0.5, 1.0)),
    "5": (30, 40, 1, (0.2, 0.1, 0.7, 0.8)),
    "6": (40, 30, 1, (0.4, 0.2, 0.9, 0.9)),
}
SPLIT_OF = {"train": ["1", "2", "6"], "val": ["4", "5"], "test": ["3", "5"]}
REQUIRED_KEYS = {
    "split", "n_images", "threshold", "threshold_source", "mean_iou", "median_iou", "p10_iou", "pooled_iou",
    "mean_dice", "mean_boundary_iou", "mean_iou_ci95", "checkpoint", "checkpoint_epoch", "weights", "run",
    "profile", "scored_at", "tta", "seglib_version", "baselines",
}


def write_split(splits: Path, name: str, ids: list[str]) -> None:
    splits.mkdir(parents=True, exist_ok=True)
    lines = ["id,image,mask,fg_fraction,stratum"]
    lines += [f"{i},Training_Images/{i}.jpg,Ground_Truth/{i}.png,0.3,0" for i in ids]
    (splits / f"{name}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    """(dataset folder, splits folder): six noisy photos with a bright rectangle/ellipse 'figure'."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "raw" / NAME
    (folder / "Training_Images").mkdir(parents=True)
    (folder / "Ground_Truth").mkdir()
    lines = ["masks,images"]
    for i, (w, h, scale, (x0, y0, x1, y1)) in PAIRS.items():
        box = [x0 * w, y0 * h, x1 * w - 1, y1 * h - 1]
        img = Image.fromarray((rng.random((h, w, 3)) * 60).astype(np.uint8))
        ImageDraw.Draw(img).ellipse(box, fill=(220, 180, 150)) if int(i) % 2 else \
            ImageDraw.Draw(img).rectangle(box, fill=(220, 180, 150))
        mw, mh = w // scale, h // scale
        mask = Image.new("L", (mw, mh), 0)
        mbox = [v / scale for v in box]
        ImageDraw.Draw(mask).ellipse(mbox, fill=255) if int(i) % 2 else \
            ImageDraw.Draw(mask).rectangle(mbox, fill=255)
        img.save(folder / "Training_Images" / f"{i}.jpg", quality=95)
        mask.save(folder / "Ground_Truth" / f"{i}.png")
        lines.append(f"{NAME}/Ground_Truth/{i}.png,{NAME}/Training_Images/{i}.jpg")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    splits = tmp_path / "splits"
    for name, ids in SPLIT_OF.items():
        write_split(splits, name, ids)
    return folder, splits


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return save_tiny_checkpoint(tmp_path / "ckpt" / "tiny.pt")


class LookupPredictor:
    """A hand-made predictor: maps each (decoded, mask-size) image to a probability map made from its own mask."""

    def __init__(self, folder: Path, fg: float = 1.0, bg: float = 0.0):
        self.threshold, self.tta, self.source = 0.5, False, "lookup"
        self.facts = lambda: {"epoch": 0, "threshold": 0.5, "weights": "none (ground truth lookup)", "profile": "test"}
        self.table = {}
        for i in PAIRS:
            rgb, mask = load_pair(folder / "Training_Images" / f"{i}.jpg", folder / "Ground_Truth" / f"{i}.png")
            self.table[self._key(rgb)] = np.where(mask > 0, fg, bg).astype(np.float32)
        self.calls = 0

    @staticmethod
    def _key(rgb: np.ndarray) -> str:
        return hashlib.sha1(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()

    def predict_proba_batch(self, images):
        self.calls += len(images)
        return [self.table[self._key(img)] for img in images]


# ------------------------------------------------------------------------------------------- protocol


def test_scaled_mask_is_scored_at_mask_size_and_ground_truth_scores_one(data, tmp_path):
    folder, splits = data
    result = evaluate_run(split="val", predictor=LookupPredictor(folder), out_dir=tmp_path / "ev",
                          dataset_dir=folder, splits_dir=splits,
                          options=EvalOptions(progress=False, n_boot=50))
    assert result.metrics["mean_iou"] == 1.0 and result.metrics["pooled_iou"] == 1.0
    test = evaluate_run(split="test", predictor=LookupPredictor(folder), out_dir=tmp_path / "ev",
                        dataset_dir=folder, splits_dir=splits, options=EvalOptions(progress=False, n_boot=50))
    table = pd.read_csv(tmp_path / "ev" / "test" / "per_image.csv", dtype={"id": str}).set_index("id")
    assert (table.loc["3", "height"], table.loc["3", "width"]) == (30, 40)  # the mask's size, not 60x80
    assert (table.loc["3", "image_height"], table.loc["3", "image_width"]) == (60, 80)
    assert bool(table.loc["3", "resized"]) and not bool(table.loc["5", "resized"])
    assert (table["iou"] == 1.0).all() and (table["boundary_iou"] == 1.0).all()
    assert test.metrics["mean_iou"] == 1.0 and test.metrics["scored_at"] == "mask resolution"


def test_real_predictor_probabilities_come_back_at_mask_size(data, tiny_checkpoint, tmp_path):
    folder, splits = data
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    records = predictions_for_split(predictor, "test", folder, splits_dir=splits)
    assert [r["id"] for r in records] == ["3", "5"]
    for r in records:
        assert r["image"].shape == (*r["mask"].shape, 3) and r["prob"].shape == r["mask"].shape
        assert r["pred"].dtype == np.uint8 and set(np.unique(r["pred"])) <= {0, 1}
    assert records[0]["mask"].shape == (30, 40)
    assert len(predictions_for_split(predictor, "test", folder, limit=1, splits_dir=splits)) == 1


def test_checkpoint_evaluation_writes_files_with_required_keys(data, tiny_checkpoint, tmp_path):
    folder, splits = data
    out = tmp_path / "ev"
    res = evaluate_run(split="val", checkpoint=tiny_checkpoint, out_dir=out, dataset_dir=folder,
                       splits_dir=splits, options=EvalOptions(progress=False, n_boot=50))
    m = json.loads((out / "val" / "metrics.json").read_text())
    assert REQUIRED_KEYS <= set(m), REQUIRED_KEYS - set(m)
    assert m["split"] == "val" and m["n_images"] == 2 and m["threshold_source"] == "val sweep"
    assert m["checkpoint"] == str(tiny_checkpoint.resolve()) and m["checkpoint_epoch"] == 1
    assert m["profile"] == "smoke" and m["tta"] is False and m["scored_at"] == "mask resolution"
    low, high = m["mean_iou_ci95"]
    assert low <= m["mean_iou"] <= high
    assert set(m["baselines"]) == set(BASELINES)
    for scores in m["baselines"].values():
        assert set(scores) == {"mean_iou", "median_iou", "pooled_iou", "mean_dice", "mean_boundary_iou",
                               "mean_iou_ci95"}
    sweep = pd.read_csv(out / "val" / "threshold_sweep.csv")
    assert list(sweep.columns) == ["threshold", "mean_iou", "pooled_iou"]
    assert sweep["threshold"].round(2).tolist() == list(SWEEP_THRESHOLDS)
    assert m["threshold"] in SWEEP_THRESHOLDS
    per_image = pd.read_csv(out / "val" / "per_image.csv", dtype={"id": str})
    for col in ("id", "iou", "dice", "boundary_iou", "precision", "recall", "tp", "fp", "fn", "fg_fraction",
                "fg_fraction_pred", "height", "width", "mean_brightness", "aspect_ratio", "is_grayscale"):
        assert col in per_image.columns
    assert per_image["id"].tolist() == ["4", "5"]
    assert res.metrics["mean_iou"] == pytest.approx(per_image["iou"].mean())
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries
    table = headline_table(out, "val")
    assert list(table.index) == ["model", *BASELINES]
    assert list(table.columns) == ["mean_iou", "ci95_low", "ci95_high", "median_iou", "pooled_iou", "mean_dice",
                                   "mean_boundary_iou"]


def test_sweep_runs_the_model_once_per_image(data, tmp_path):
    folder, splits = data
    predictor = LookupPredictor(folder)
    evaluate_run(split="val", predictor=predictor, out_dir=tmp_path / "ev", dataset_dir=folder,
                 splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    assert predictor.calls == len(SPLIT_OF["val"])


# ------------------------------------------------------------------------------------------- threshold


def test_test_threshold_comes_from_val_and_val_is_evaluated_first(data, tmp_path, caplog):
    folder, splits = data
    caplog.set_level(logging.INFO, logger="seglib")
    # fg 0.62, bg 0.58: only thresholds in (0.58, 0.62] separate them, so the val sweep must pick 0.60
    predictor = LookupPredictor(folder, fg=0.62, bg=0.58)
    out = tmp_path / "ev"
    res = evaluate_run(split="test", predictor=predictor, out_dir=out, dataset_dir=folder, splits_dir=splits,
                       options=EvalOptions(progress=False, n_boot=10))
    assert "evaluating val first" in caplog.text
    assert (out / "val" / "metrics.json").is_file() and (out / "val" / "threshold_sweep.csv").is_file()
    val = json.loads((out / "val" / "metrics.json").read_text())
    assert val["threshold"] == pytest.approx(0.60)
    assert res.threshold == pytest.approx(0.60) and res.metrics["threshold_source"] == "val sweep"
    assert res.metrics["mean_iou"] == 1.0  # 0.5 (the checkpoint's threshold) would have scored all-foreground
    assert res.val_result is not None
    assert not (out / "test" / "threshold_sweep.csv").exists()


def test_existing_val_threshold_is_reused(data, tmp_path, caplog):
    folder, splits = data
    caplog.set_level(logging.INFO, logger="seglib")
    out = tmp_path / "ev"
    evaluate_run(split="val", predictor=LookupPredictor(folder, fg=0.62, bg=0.58), out_dir=out,
                 dataset_dir=folder, splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    caplog.clear()
    predictor = LookupPredictor(folder, fg=0.62, bg=0.58)
    res = evaluate_run(split="test", predictor=predictor, out_dir=out, dataset_dir=folder, splits_dir=splits,
                       options=EvalOptions(progress=False, n_boot=10))
    assert "evaluating val first" not in caplog.text
    assert res.val_result is None and predictor.calls == len(SPLIT_OF["test"])
    assert res.threshold == pytest.approx(0.60) and res.metrics["threshold_from"].endswith("metrics.json")


def test_boundary_refinement_is_recorded_and_a_val_threshold_is_reused_only_with_the_same_refinement(
        data, tiny_checkpoint, tmp_path, caplog):
    folder, splits = data
    out = tmp_path / "ev"
    caplog.set_level(logging.INFO, logger="seglib")
    kwargs = dict(checkpoint=tiny_checkpoint, out_dir=out, dataset_dir=folder, splits_dir=splits)
    evaluate_run(split="val", options=EvalOptions(progress=False, n_boot=50, refine=True), **kwargs)
    assert json.loads((out / "@refine" / "val" / "metrics.json").read_text())["refine"] is True
    test = evaluate_run(split="test", options=EvalOptions(progress=False, n_boot=50, refine=False), **kwargs)
    assert test.metrics["refine"] is False
    assert any("evaluating val first" in line for line in caplog.messages)  # scored with refined edges: not reused
    caplog.clear()
    evaluate_run(split="test", options=EvalOptions(progress=False, n_boot=50, overwrite=True), **kwargs)
    assert not any("evaluating val first" in line for line in caplog.messages)
    with pytest.raises(SeglibError, match="lookup: cannot refine boundaries"):
        evaluate_run(split="val", predictor=LookupPredictor(folder), out_dir=tmp_path / "lookup",
                     dataset_dir=folder, splits_dir=splits,
                     options=EvalOptions(progress=False, n_boot=50, refine=True))


def test_threshold_from_checkpoint(data, tmp_path):
    folder, splits = data
    res = evaluate_run(split="test", predictor=LookupPredictor(folder, fg=0.62, bg=0.58),
                       out_dir=tmp_path / "ev", dataset_dir=folder, splits_dir=splits,
                       options=EvalOptions(progress=False, n_boot=10, threshold_source="checkpoint"))
    assert res.metrics["threshold_source"] == "checkpoint" and res.threshold == 0.5
    assert not (tmp_path / "ev" / "val").exists()


def test_choose_threshold_ties_go_closest_to_half():
    sweep = pd.DataFrame({"threshold": list(SWEEP_THRESHOLDS), "mean_iou": [0.9] * len(SWEEP_THRESHOLDS),
                          "pooled_iou": 0.9})
    assert choose_threshold(sweep) == 0.5
    sweep.loc[sweep["threshold"] == 0.5, "mean_iou"] = 0.8
    assert choose_threshold(sweep) == 0.45  # 0.45 and 0.55 tie on distance: the lower one
    sweep.loc[sweep["threshold"] == 0.35, "mean_iou"] = 0.95
    assert choose_threshold(sweep) == 0.35


def test_threshold_sweep_on_cached_probabilities():
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    prob = np.where(mask > 0, 0.62, 0.58).astype(np.float32)
    sweep = threshold_sweep([{"mask": mask, "prob": prob}]).set_index("threshold")
    assert sweep.loc[0.6, "mean_iou"] == 1.0 and sweep.loc[0.55, "mean_iou"] == 0.5
    assert sweep.loc[0.65, "mean_iou"] == 0.0


# ------------------------------------------------------------------------------------------- test once


def test_rescoring_test_needs_overwrite(data, tiny_checkpoint, tmp_path):
    folder, splits = data
    kwargs = dict(checkpoint=tiny_checkpoint, out_dir=tmp_path / "ev", dataset_dir=folder, splits_dir=splits)
    evaluate_run(split="test", options=EvalOptions(progress=False, n_boot=10), **kwargs)
    metrics = tmp_path / "ev" / "test" / "metrics.json"
    before = metrics.read_text()
    with pytest.raises(SeglibError, match="overwrite"):
        evaluate_run(split="test", options=EvalOptions(progress=False, n_boot=10), **kwargs)
    assert metrics.read_text() == before
    evaluate_run(split="val", options=EvalOptions(progress=False, n_boot=10), **kwargs)  # val: re-scored freely
    res = evaluate_run(split="test", options=EvalOptions(progress=False, n_boot=10, overwrite=True), **kwargs)
    assert res.metrics["n_images"] == 2


def test_run_folder_evaluation(data, tiny_checkpoint, tmp_path, monkeypatch):
    folder, splits = data
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "best.pt").write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(runs))
    res = evaluate_run("r1", "test", dataset_dir=folder, splits_dir=splits,
                       options=EvalOptions(progress=False, n_boot=10))
    assert res.out_dir == runs / "r1" / "eval" / "test"
    assert (runs / "r1" / "eval" / "val" / "metrics.json").is_file()
    assert res.metrics["run"] == "r1"
    assert list(headline_table("r1", "test").index)[0] == "model"
    with pytest.raises(SeglibError, match="not found"):
        evaluate_run("nope", "val", dataset_dir=folder, splits_dir=splits,
                     options=EvalOptions(progress=False))
    with pytest.raises(SeglibError, match="not evaluated"):
        headline_table(runs / "r1", "nosuch")


def test_bad_arguments(data, tiny_checkpoint, tmp_path):
    folder, splits = data
    with pytest.raises(SeglibError, match="out"):
        evaluate_run(split="val", checkpoint=tiny_checkpoint, dataset_dir=folder, splits_dir=splits)
    with pytest.raises(SeglibError, match="split"):
        evaluate_run(split="train", checkpoint=tiny_checkpoint, out_dir=tmp_path, dataset_dir=folder)
    with pytest.raises(SeglibError, match="not found"):
        evaluate_run(split="val", checkpoint=tmp_path / "missing.pt", out_dir=tmp_path)


def test_eval_options_are_checked_when_made_and_travel_as_one_object(data, tmp_path):
    folder, splits = data
    with pytest.raises(SeglibError, match=r"^threshold_source 'sweep': expected 'val' or 'checkpoint'$"):
        EvalOptions(threshold_source="sweep")
    with pytest.raises(TypeError, match="evaluate_run.. got an unexpected keyword argument 'n_boot'"):
        evaluate_run(split="val", predictor=LookupPredictor(folder), out_dir=tmp_path / "ev", n_boot=10)
    assert not (tmp_path / "ev").exists()
    options = EvalOptions(progress=False, n_boot=10, threshold_source="checkpoint")
    kw = {"split": "test", "dataset_dir": folder, "splits_dir": splits}
    given = evaluate_run(predictor=LookupPredictor(folder, fg=0.62, bg=0.58), out_dir=tmp_path / "a", options=options,
                         **kw)
    assert given.metrics["threshold_source"] == "checkpoint" and given.metrics["n_boot"] == 10
    assert options == EvalOptions(progress=False, n_boot=10, threshold_source="checkpoint")  # left as given


# ------------------------------------------------------------------------------------------- baselines


def test_baselines_hand_checked_on_one_image(data, tmp_path):
    folder, splits = data
    one = tmp_path / "one"
    write_split(one, "train", SPLIT_OF["train"])
    write_split(one, "test", ["4"])
    _, mask = load_pair(folder / "Training_Images" / "4.jpg", folder / "Ground_Truth" / "4.png")
    scores = baseline_scores("test", folder, splits_dir=one, n_boot=10)
    assert set(scores) == set(BASELINES)
    assert scores["all-foreground"]["mean_iou"] == pytest.approx(mask.mean())  # IoU = foreground fraction
    assert scores["all-foreground"]["pooled_iou"] == pytest.approx(mask.mean())
    assert scores["all-background"]["mean_iou"] == 0.0 and scores["all-background"]["mean_dice"] == 0.0


def test_baselines_on_a_split(data):
    folder, splits = data
    scores = baseline_scores("val", folder, splits_dir=splits, n_boot=10)
    assert scores["all-background"]["mean_iou"] == 0.0  # every mask is non-empty
    fractions = []
    for i in SPLIT_OF["val"]:
        _, mask = load_pair(folder / "Training_Images" / f"{i}.jpg", folder / "Ground_Truth" / f"{i}.png")
        fractions.append(mask.mean())
    assert scores["all-foreground"]["mean_iou"] == pytest.approx(np.mean(fractions))
    assert 0.0 < scores["mean-mask prior"]["mean_iou"] <= 1.0


def test_mean_mask_prior_uses_train_only(data, tmp_path):
    folder, splits = data
    prior = mean_mask_prior(folder, splits, size=32)
    assert prior.shape == (32, 32) and prior.dtype == np.uint8 and 0 < prior.sum() < prior.size
    other = tmp_path / "other"
    write_split(other, "train", ["1"])  # a different train split gives a different prior
    alone = mean_mask_prior(folder, other, size=32)
    assert not np.array_equal(alone, prior)
    assert prior_for(prior, 30, 40).shape == (30, 40)


# ------------------------------------------------------------------------------------------- CLI


# ------------------------------------------------------------------------------------------- saved evaluations


def save_best(run_dir, epoch: int):
    return save_tiny_checkpoint(run_dir / "best.pt", epoch=epoch, seed=epoch)


def test_load_or_evaluate_reuses_val_and_never_rescores_test_unasked(synthetic_splits, tmp_path, caplog):
    folder, splits = synthetic_splits
    run_dir = tmp_path / "runs" / "r1"
    caplog.set_level(logging.INFO, logger="seglib")
    kw = {"dataset_dir": folder, "splits_dir": splits, "n_boot": 20}
    run_dir.mkdir(parents=True)
    with pytest.raises(SeglibError, match="run r1 not trained yet: run notebook 03 or `seglib train --run r1`"):
        load_or_evaluate(run_dir, "val", **kw)
    save_best(run_dir, 1)
    val = load_or_evaluate(run_dir, "val", **kw)
    assert "not evaluated yet" in caplog.messages[-1] and val.sweep is not None
    again = load_or_evaluate(run_dir, "val", **kw)
    assert "reusing" in caplog.messages[-1] and again.threshold == val.threshold and again.sweep is not None
    pd.testing.assert_frame_equal(again.per_image[["id", "iou"]], val.per_image[["id", "iou"]], atol=1e-5)
    test = load_or_evaluate(run_dir, "test", **kw)
    assert "not scored yet" in caplog.messages[-1]
    assert test.metrics["split_checked"] is False  # a checkpoint not written by train() records no split
    stamp = (run_dir / "eval" / "test" / "metrics.json").stat().st_mtime_ns
    reused = load_or_evaluate(run_dir, "test", **kw)
    assert caplog.messages[-1].startswith("test was already scored for this run on ") and "showing those results" in caplog.messages[-1]
    assert (run_dir / "eval" / "test" / "metrics.json").stat().st_mtime_ns == stamp
    assert reused.metrics["mean_iou"] == test.metrics["mean_iou"]
    save_best(run_dir, 2)  # the run was retrained: val is scored again, test is kept but flagged
    load_or_evaluate(run_dir, "val", **kw)
    assert "another checkpoint" in caplog.messages[-1]
    load_or_evaluate(run_dir, "test", **kw)
    assert "Note: they were scored with best.pt, epoch 1, without TTA, not as asked now (best.pt, epoch 2, " \
           "without TTA)" in caplog.messages[-1]
    kw_any = {**kw, "tta": None}  # None: whatever the saved evaluation used
    assert load_or_evaluate(run_dir, "val", **kw_any).metrics["tta"] is False and "reusing" in caplog.messages[-1]
    rescored = load_or_evaluate(run_dir, "test", rescore=True, **kw)
    assert "scoring test again" in caplog.messages[-1] and rescored.metrics["checkpoint_epoch"] == 2


def run_cli(argv: list[str]) -> int:
    return run_subcommand(add_parser, argv)


def test_cli(data, tiny_checkpoint, tmp_path, capsys):
    folder, splits = data
    out = tmp_path / "cli"
    common = ["--checkpoint", str(tiny_checkpoint), "--data-dir", str(folder), "--splits-dir", str(splits),
              "--quiet"]
    assert run_cli(["evaluate", *common, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "evaluating val first" in text and "all-foreground" in text and "mean-mask prior" in text
    assert f"wrote {out / 'test' / 'metrics.json'}" in text and f"wrote {out / 'val' / 'metrics.json'}" in text
    with pytest.raises(SeglibError, match="overwrite"):
        run_cli(["evaluate", *common, "--out", str(out)])
    assert run_cli(["evaluate", *common, "--out", str(out), "--overwrite", "--tta"]) == 0
    assert json.loads((out / "test" / "metrics.json").read_text())["tta"] is True
    assert json.loads((out / "val" / "metrics.json").read_text())["tta"] is True  # val re-swept with TTA
    with pytest.raises(SeglibError, match="--out"):
        run_cli(["evaluate", *common, "--split", "val"])
    with pytest.raises(SystemExit):
        run_cli(["evaluate", "--split", "val"])  # --run or --checkpoint is required


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not os.environ.get("SEGLIB_TEST_REAL_DATA"), reason="set SEGLIB_TEST_REAL_DATA to run")
def test_smoke_run_on_real_val(real_dataset, tmp_path):
    from seglib.data.splits import read_split
    from seglib.infra.io import load_mask_raw
    from seglib.training.engine import train

    run = tmp_path / "smoke"
    train(make_config("smoke", {"threads": 1}), run, dataset_dir=real_dataset, progress=False)
    res = evaluate_run(run, "val", dataset_dir=real_dataset, options=EvalOptions(progress=False, n_boot=200))
    val = read_split("val")
    assert res.metrics["n_images"] == len(val) == 44
    per_image = res.per_image.set_index("id")
    for row in val.head(5).itertuples():
        mask = load_mask_raw(real_dataset / row.mask)
        assert (per_image.loc[str(row.id), "height"], per_image.loc[str(row.id), "width"]) == mask.shape
    assert per_image["resized"].any()  # the real data's downscaled masks
    assert res.metrics["threshold"] in SWEEP_THRESHOLDS
    base = res.metrics["baselines"]
    assert base["all-background"]["mean_iou"] == 0.0
    assert 0.2 < base["all-foreground"]["mean_iou"] < 0.8
    assert base["mean-mask prior"]["mean_iou"] > base["all-background"]["mean_iou"]


# ------------------------------------------------------------------------------------------- one split version


def test_a_split_rewritten_during_the_evaluation_is_refused_not_recorded_as_checked(data, tmp_path, monkeypatch):
    import seglib.evaluate.protocol as protocol

    folder, splits = data
    out = tmp_path / "ev"
    evaluate_run(split="val", predictor=LookupPredictor(folder), out_dir=out, dataset_dir=folder,
                 splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    real_score = protocol.score_records

    def split_rewritten_meanwhile(records, threshold):
        write_split(splits, "test", ["1", "2"])  # `data split --overwrite` while test is being scored
        return real_score(records, threshold)

    monkeypatch.setattr(protocol, "score_records", split_rewritten_meanwhile)
    with pytest.raises(DataError, match="test.csv changed while test was being scored") as info:
        evaluate_run(split="test", predictor=LookupPredictor(folder), out_dir=out, dataset_dir=folder,
                     splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    assert "nothing was written" in str(info.value) and "\n" not in str(info.value)
    assert not (out / "test").exists()  # no metrics.json saying `split_warnings: []`, `split_checked: true`


def test_one_evaluation_reads_the_split_files_once(data, tmp_path, monkeypatch):
    import seglib.data.snapshot as snap

    folder, splits = data
    reads: list[Path] = []
    real_read = snap._read_files
    monkeypatch.setattr(snap, "_read_files", lambda folder: reads.append(folder) or real_read(folder))
    res = evaluate_run(split="test", predictor=LookupPredictor(folder), out_dir=tmp_path / "ev",
                       dataset_dir=folder, splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    # the one read and its check right after, then a check before val's and before test's results are written:
    # val, scored first for test's threshold, uses the same snapshot
    assert len(reads) == 4
    assert res.metrics["splits_sha1"] == res.val_result.metrics["splits_sha1"]


def test_a_duplicated_split_row_is_refused_not_scored_twice(data, tmp_path):
    folder, splits = data
    write_split(splits, "val", ["4", "5", "4"])
    with pytest.raises(DataError, match=r"val.csv: id 4 is listed 2 times \(lines 2, 4\)"):
        evaluate_run(split="val", predictor=LookupPredictor(folder), out_dir=tmp_path / "ev",
                     dataset_dir=folder, splits_dir=splits, options=EvalOptions(progress=False, n_boot=10))
    assert not (tmp_path / "ev").exists()


def test_the_reuse_note_names_the_tta_setting_of_both_evaluations(synthetic_splits, tmp_path, caplog):
    folder, splits = synthetic_splits
    run_dir = tmp_path / "runs" / "r1"
    save_best(run_dir, 1)
    caplog.set_level(logging.INFO, logger="seglib")
    kw = {"dataset_dir": folder, "splits_dir": splits, "n_boot": 10}
    load_or_evaluate(run_dir, "test", tta=False, **kw)  # scored without TTA (e.g. by `seglib evaluate`)
    assert "not scored yet; scoring it now (best.pt, epoch 1, without TTA)" in " ".join(caplog.messages)
    load_or_evaluate(run_dir, "test", tta=True, **kw)  # notebook 04 asks for TTA: the saved scores are shown
    assert "they were scored with best.pt, epoch 1, without TTA, not as asked now (best.pt, epoch 1, with flip " \
           "TTA)" in caplog.messages[-1]


def test_cli_scores_two_external_csvs_of_the_same_name_as_two_sets(data, tiny_checkpoint, tmp_path, capsys):
    folder, splits = data
    sets = {}
    for sub, ids in (("a", ["1", "2"]), ("b", ["4", "6"])):  # same file name, other photos
        (tmp_path / sub).mkdir()
        rows = [f"{folder}/Training_Images/{i}.jpg,{folder}/Ground_Truth/{i}.png" for i in ids]
        (tmp_path / sub / "ok.csv").write_text("image,mask\n" + "\n".join(rows) + "\n")
        common = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "ev"), "--data-dir", str(folder),
                  "--splits-dir", str(splits), "--quiet", "--threshold-from", "checkpoint"]
        assert run_cli(["evaluate", *common, "--external", str(tmp_path / sub / "ok.csv")]) == 0
        written = [line for line in capsys.readouterr().out.splitlines() if line.endswith("metrics.json")]
        sets[sub] = json.loads(Path(written[-1].removeprefix("wrote ")).read_text())
    assert sets["a"]["split"] != sets["b"]["split"] and sets["a"]["split"].startswith("ok-")
    per_image = {k: pd.read_csv(tmp_path / "ev" / m["split"] / "per_image.csv", dtype={"id": str})["id"].tolist()
                 for k, m in sets.items()}
    assert per_image == {"a": ["1", "2"], "b": ["4", "6"]}


# ------------------------------------------------------- one writer per --out, fenced folders, full disks (issue 35)


def _evaluate(folder, splits, checkpoint, out, *more) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--out", str(out), "--data-dir", str(folder),
            "--splits-dir", str(splits), "--split", "val", "--quiet", *more]


def test_evaluate_into_an_out_in_use_is_refused_at_once_naming_the_holder(data, tiny_checkpoint, tmp_path, capsys):
    from seglib.cli import main
    from seglib.infra import locks

    folder, splits = data
    out = tmp_path / "new" / "ev"
    with locks.exclusive(locks.output_folder(out), f"{out}"):  # another `seglib evaluate --out` writing there
        assert main(_evaluate(folder, splits, tiny_checkpoint, out)) == 2
        assert [p.name for p in out.iterdir()] == [".seglib-output.lock"]  # the holder's lock, nothing written
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: in use by pid {os.getpid()}"), err
    assert not (tmp_path / "new").exists()


def test_evaluate_never_writes_into_the_data_set_or_splits_folder_it_reads(data, tiny_checkpoint, tmp_path, capsys):
    """Case 10: `evaluate --checkpoint ... --out` into (or below) the data set folder or the splits folder is refused
    with one line before any work; nothing is written or created there."""
    from seglib.cli import main

    folder, splits = data
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for out in (folder, folder / "eval", splits / "eval"):
        assert main(_evaluate(folder, splits, tiny_checkpoint, out, "--overwrite")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: "), err
        assert "refusing to write there" in err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_evaluate_on_a_full_disk_names_the_file_and_leaves_no_empty_folder(data, tiny_checkpoint, tmp_path, capsys,
                                                                           monkeypatch):
    import errno

    from seglib.cli import main

    folder, splits = data
    out = tmp_path / "ev"
    real_write = Path.write_text

    def full(self, *args, **kwargs):  # the temporary file is made, its bytes do not fit
        if out in self.parents:
            real_write(self, "")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(_evaluate(folder, splits, tiny_checkpoint, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out / 'val' / 'per_image.csv'}: "), err
    assert "No space left on device" in err
    assert not out.exists()


def test_two_evaluations_of_one_run_are_one_at_a_time(data, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """`seglib evaluate --run R` while another evaluation of R writes its eval folder: refused at once with one line
    naming the holder, nothing written (the run's eval folder had no lock before; #35's class, noticed after it)."""
    import shutil

    from seglib.cli import main
    from seglib.infra import locks
    from seglib.runs import Run

    folder, splits = data
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs" / "r").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, Run.named("r").best)
    eval_root = Run.named("r").eval_root
    with locks.exclusive(locks.output_folder(eval_root), "another evaluation"):
        code = main(["evaluate", "--run", "r", "--split", "val", "--quiet", "--data-dir", str(folder),
                     "--splits-dir", str(splits)])
        assert code == 2 and [p.name for p in eval_root.iterdir()] == [".seglib-output.lock"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: evaluation of run r: in use by pid {os.getpid()}")
    assert main(["evaluate", "--run", "r", "--split", "val", "--quiet", "--data-dir", str(folder),
                 "--splits-dir", str(splits)]) == 0
    assert (eval_root / "val" / "metrics.json").is_file() and not list(eval_root.glob(".*lock"))


def test_a_model_of_several_sets_scored_on_its_own_splits_gets_no_different_split_warning():
    """The record of a run on several sets hashes each set's ids apart ('+'-joined); the check compares like with
    like, so the default's own test split raises no "not the one this model was trained beside" (seen in notebook 04
    of `make reports`), and a changed split of one set still does."""
    from seglib.data.splits import check_scored_split, ids_hash

    record = {"datasets": ["human-seg", "viton"], "train_ids": ["human-seg/9", "viton/z"], "val_ids": [],
              "test_sha1": ids_hash(["1", "2"]) + "+" + ids_hash(["a"])}
    assert check_scored_split(record, "test", ["human-seg/1", "human-seg/2", "viton/a"]) == []
    changed = check_scored_split(record, "test", ["human-seg/1", "viton/a"])
    assert len(changed) == 1 and "not the one this model was trained beside" in changed[0]
    assert check_scored_split(record, "test", ["human-seg/1", "human-seg/2", "viton/a", "other/x"]) != []
