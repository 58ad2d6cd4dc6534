"""The predicted IoU of every mask: features on known probability maps, the flip probe, the ridge fitted on toy data,
the sidecar beside its checkpoint, quality.csv written by `seglib predict` by default (atomically, merged, a
foreign one refused), a checkpoint without a sidecar, and `quality_table` for the label commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset, run_subcommand, save_tiny_checkpoint
from PIL import Image

from seglib.cli.predict import add_parser
from seglib.infra.errors import SeglibError
from seglib.predict import Predictor
from seglib.predict.quality import QUALITY_TABLE, TABLE_COLUMNS, estimator_for, file_sha256, quality_table
from seglib.predict.quality_features import (
    EDGE_UNCERTAINTY,
    FEATURES,
    FIGURE_SHARE,
    FLIP_IOU,
    FRAGMENTS,
    INSIDE_CONFIDENCE,
    PLAIN_FEATURES,
    SELF_IOU,
    UNCERTAIN_SHARE,
    FlipProbe,
    mask_features,
)
from seglib.predict.quality_model import (
    MIN_VAL_PHOTOS,
    PLAIN_MODEL,
    TTA_MODEL,
    QualityEstimator,
    fit_quality_model,
    sidecar_path,
)


def disk(h: int = 80, w: int = 100, r: float = 20.0, blur: float = 0.0, centre=(40, 50)) -> np.ndarray:
    """A probability map of a disk: 0/1 when `blur` is 0, else a logistic ramp `blur` pixels wide at its edge."""
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - centre[0], xx - centre[1]) - r
    return (d <= 0).astype(np.float32) if blur == 0 else (1 / (1 + np.exp(d / blur))).astype(np.float32)


# ----------------------------------------------------------------------------------------------- the features
def test_a_crisp_disk_is_certain_whole_and_one_piece():
    f = mask_features(disk(), 0.5)
    assert f[EDGE_UNCERTAINTY] == pytest.approx(0.0)
    assert f[SELF_IOU] == pytest.approx(1.0) and f[INSIDE_CONFIDENCE] == pytest.approx(1.0)
    assert f[FRAGMENTS] == 1 and f[UNCERTAIN_SHARE] == 0
    assert f[FIGURE_SHARE] == pytest.approx(np.pi * 20**2 / (80 * 100), rel=0.05)
    assert np.isnan(f[FLIP_IOU]) and mask_features(disk(), 0.5, 0.8)[FLIP_IOU] == 0.8


def test_a_blurred_edge_is_uncertain_and_expects_a_lower_iou():
    sharp, soft = mask_features(disk(blur=0.5), 0.5), mask_features(disk(blur=4.0), 0.5)
    assert soft[EDGE_UNCERTAINTY] > sharp[EDGE_UNCERTAINTY] + 0.2
    assert soft[UNCERTAIN_SHARE] > sharp[UNCERTAIN_SHARE]
    assert soft[SELF_IOU] < sharp[SELF_IOU] < 1.0
    assert soft[INSIDE_CONFIDENCE] < sharp[INSIDE_CONFIDENCE]


def test_fragments_count_pieces_above_a_tiny_area_and_an_empty_mask_is_finite():
    two = np.maximum(disk(r=10, centre=(40, 20)), disk(r=10, centre=(40, 80)))
    two[2, 2] = 1.0  # a one-pixel speck: below the fragment area
    assert mask_features(two, 0.5)[FRAGMENTS] == 2
    empty = mask_features(np.zeros((30, 40), np.float32), 0.5)
    assert empty[FIGURE_SHARE] == 0 and empty[FRAGMENTS] == 0 and empty[EDGE_UNCERTAINTY] == 0
    assert all(np.isfinite(v) for k, v in empty.items() if k != FLIP_IOU)


def test_a_large_map_is_measured_smaller_with_the_same_shares():
    big = mask_features(disk(2400, 3000, 600, 0, (1200, 1500)), 0.5)
    assert big[FIGURE_SHARE] == pytest.approx(np.pi * 600**2 / (2400 * 3000), rel=0.02)
    assert big[FRAGMENTS] == 1


class SidedNet:
    """A network as seglib calls one, TTA done as the real ones do it (the mirror image's probabilities mirrored
    back and averaged in); `lean` favours the left half of every picture over the right, so that a photo and its
    mirror image disagree."""

    device = "cpu"

    def __init__(self, lean: float = 0.0):
        self.lean = lean

    def plain(self, batch: np.ndarray) -> np.ndarray:
        w = batch.shape[-1]
        side = np.where(np.arange(w) < w // 2, self.lean, -self.lean)
        return 1 / (1 + np.exp(-(batch[:, 0] + side)))

    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        probs = self.plain(batch)
        if tta:
            probs = 0.5 * (probs + self.plain(batch[..., ::-1])[..., ::-1])
        return probs.astype(np.float32)


def test_the_flip_probe_gives_tta_probabilities_and_the_mirror_agreement():
    batch = np.full((1, 3, 8, 8), -5.0, np.float32)
    batch[0, 0, 2:6, 1:5] = 5.0
    fair, sided = SidedNet(), SidedNet(lean=10.0)
    probe = FlipProbe(fair, 0.5)
    probe.start()
    np.testing.assert_allclose(probe(batch, True), fair(batch, True), atol=1e-6)
    assert probe.first_flip_iou() == pytest.approx(1.0)  # the network sees a mirror image as it sees the photo
    assert probe.device == "cpu"  # the network's other attributes show through
    probe = FlipProbe(sided, 0.5)
    probe.start()
    np.testing.assert_allclose(probe(batch, True), sided(batch, True), atol=1e-6)
    assert probe.first_flip_iou() < 0.5
    probe.start()
    probe(batch, False)
    assert probe.first_flip_iou() is None


# ----------------------------------------------------------------------------------------------- the estimator
def toy_features(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Features driven by a latent error, with noise, and the IoU that error gives."""
    rng = np.random.default_rng(seed)
    error = np.exp(rng.uniform(np.log(0.01), np.log(0.5), n))
    noisy = lambda scale: np.exp(rng.normal(0, scale, n))  # noqa: E731
    table = pd.DataFrame({
        EDGE_UNCERTAINTY: np.clip(0.2 * error**0.5 * noisy(0.2), 0, 1),
        UNCERTAIN_SHARE: np.clip(0.05 * error * noisy(0.3), 0, 1),
        "uncertain_to_figure": np.clip(0.5 * error * noisy(0.3), 0, None),
        FIGURE_SHARE: rng.uniform(0.05, 0.6, n),
        FRAGMENTS: rng.integers(1, 4, n).astype(float),
        "largest_share": np.clip(1 - 0.3 * error * noisy(0.3), 0, 1),
        INSIDE_CONFIDENCE: np.clip(1 - 0.2 * error * noisy(0.3), 0, 1),
        SELF_IOU: np.clip(1 - error * noisy(0.3), 0, 1),
        FLIP_IOU: np.clip(1 - 0.8 * error * noisy(0.3), 0, 1),
    })
    return table, 1 - error


def test_a_fit_on_toy_val_photos_recovers_the_order_of_new_ones():
    from scipy.stats import spearmanr

    val, val_iou = toy_features(44, 0)
    model = fit_quality_model(val, val_iou)
    new, new_iou = toy_features(200, 1)
    predicted = model.predict(new)
    assert ((predicted >= 0) & (predicted <= 1)).all()
    assert spearmanr(predicted, new_iou)[0] > 0.8
    assert model.val_spearman_loo > 0.8 and model.val_photos == 44
    assert 0.1 <= model.val_flagged_share < 0.5  # catches val's worst tenth (5 photos), flags few others
    plain = fit_quality_model(val, val_iou, PLAIN_FEATURES)
    assert FLIP_IOU not in plain.features


def test_one_badly_predicted_photo_among_the_worst_does_not_make_the_flag_flag_everything():
    """The cut trades the worst tenth caught against the others flagged (Youden's J), not the highest prediction
    among the worst: on a val split of several sets one such photo had the flag mark 97% of val."""
    from seglib.predict.quality_model import flag_cut

    iou = np.linspace(0.5, 0.99, 100)  # the worst tenth: the first ten
    predicted = iou.copy()
    predicted[0] = 0.995  # the worst photo predicted as the best
    cut = flag_cut(predicted, iou)
    assert cut == pytest.approx(iou[9])  # nine of the ten caught, none of the other ninety flagged
    assert (predicted <= cut).sum() == 9
    assert flag_cut(iou, iou) == pytest.approx(iou[9])  # a perfect ranking: exactly the worst tenth


def test_too_few_val_photos_fit_no_model():
    table, iou = toy_features(MIN_VAL_PHOTOS - 1, 0)
    with pytest.raises(SeglibError, match="at least"):
        fit_quality_model(table, iou)


def toy_estimator(model_file=None) -> QualityEstimator:
    table, iou = toy_features(30, 0)
    return QualityEstimator({TTA_MODEL: fit_quality_model(table, iou), PLAIN_MODEL: fit_quality_model(
        table, iou, PLAIN_FEATURES)}, {"model_sha256": file_sha256(model_file) if model_file else ""})


def test_the_estimator_round_trips_through_its_sidecar_and_a_bad_one_is_one_line(tmp_path):
    estimator = toy_estimator()
    path = estimator.save(tmp_path / "x.quality.json")
    again = QualityEstimator.load(path)
    table, _ = toy_features(20, 3)
    np.testing.assert_allclose(again.model_for(True).predict(table), estimator.model_for(True).predict(table))
    assert sidecar_path(tmp_path / "best.pt") == tmp_path / "best.quality.json"
    (tmp_path / "bad.json").write_text('{"format": 1, "models": {"tta": {"features": ["nope"]}}}')
    with pytest.raises(SeglibError, match="not a seglib quality estimator") as info:
        QualityEstimator.load(tmp_path / "bad.json")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- predict
@pytest.fixture
def checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path / "ckpt" / "tiny.pt", input_size=32)


def photos(folder, n: int = 3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((30 + 4 * i, 40, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def predict(argv) -> int:
    return run_subcommand(add_parser, ["predict", *map(str, argv), "--no-progress"])


def test_predict_writes_the_table_by_default_even_without_a_sidecar(tmp_path, checkpoint, caplog):
    folder = photos(tmp_path / "in")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "out"
    assert predict([folder, "--checkpoint", checkpoint, "--out", out]) == 1  # the broken photo failed
    table = pd.read_csv(out / QUALITY_TABLE)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(table["mask"]) == ["p0.mask.png", "p1.mask.png", "p2.mask.png"]  # no row for the broken photo
    assert table["predicted_iou"].isna().all() and not table["check"].any()
    assert table[list(PLAIN_FEATURES)].notna().all().all()
    said = [r.getMessage() for r in caplog.records if "no quality estimator" in r.getMessage()]
    assert len(said) == 1 and "predicted_iou is left empty" in said[0]
    assert not sidecar_path(checkpoint).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # written atomically: no temporary file


def test_a_sidecar_beside_the_checkpoint_fills_the_predicted_iou_and_a_stale_one_is_not_used(tmp_path, checkpoint):
    toy_estimator(checkpoint).save(sidecar_path(checkpoint))
    folder, out = photos(tmp_path / "in"), tmp_path / "out"
    assert predict([folder, "--checkpoint", checkpoint, "--out", out, "--tta"]) == 0
    table = pd.read_csv(out / QUALITY_TABLE)
    assert table["predicted_iou"].between(0, 1).all() and table["check"].dtype == bool
    assert table[FLIP_IOU].between(0, 1).all()  # TTA ran: the flip agreement came with it
    assert predict([folder, "--checkpoint", checkpoint, "--out", tmp_path / "plain", "--no-tta"]) == 0
    assert pd.read_csv(tmp_path / "plain" / QUALITY_TABLE)[FLIP_IOU].isna().all()
    QualityEstimator(toy_estimator().models, {"model_sha256": "0" * 64}).save(sidecar_path(checkpoint))
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert estimator_for(predictor, checkpoint, fit=False) is None


def test_a_second_batch_merges_its_rows_and_a_foreign_table_is_refused(tmp_path, checkpoint):
    folder, out = photos(tmp_path / "in"), tmp_path / "out"
    assert predict([folder / "p0.png", "--checkpoint", checkpoint, "--out", out]) == 0
    assert predict([folder / "p1.png", "--checkpoint", checkpoint, "--out", out]) == 0
    assert list(pd.read_csv(out / QUALITY_TABLE)["mask"]) == ["p0.mask.png", "p1.mask.png"]
    other = tmp_path / "other"
    other.mkdir()
    (other / QUALITY_TABLE).write_text("my,own\n1,2\n")
    with pytest.raises(SeglibError, match="not a table seglib predict wrote"):
        predict([folder / "p0.png", "--checkpoint", checkpoint, "--out", other])
    assert sorted(p.name for p in other.iterdir()) == [QUALITY_TABLE]  # nothing written
    assert predict([folder / "p0.png", "--checkpoint", checkpoint, "--out", other, "--no-quality"]) == 0
    assert (other / QUALITY_TABLE).read_text() == "my,own\n1,2\n"


def val_checkpoint(tmp_path) -> tuple:
    """A tiny checkpoint that records its val photos (at least MIN_VAL_PHOTOS of a synthetic set), with the set's
    folder and splits folder."""
    from seglib.checkpoint import load_checkpoint, save_checkpoint
    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split

    dataset = make_dataset(tmp_path / "raw", n=24, scaled_every=0)
    table = make_split(check_dataset(dataset), seed=0, fractions={"train": 0.25, "val": 0.5, "test": 0.25})
    write_split(table, tmp_path / "splits")
    path = save_tiny_checkpoint(tmp_path / "run" / "best.pt", input_size=32)
    state = load_checkpoint(path)
    ids = {split: [str(i) for i in table.loc[table["split"] == split, "id"]] for split in ("train", "val")}
    state["data_split"] = {"train_ids": ids["train"], "val_ids": ids["val"]}
    save_checkpoint(state, path)
    return path, dataset, tmp_path / "splits", len(ids["val"])


def test_a_checkpoint_without_a_sidecar_gets_one_fitted_on_its_val_photos(tmp_path):
    path, dataset, splits, n_val = val_checkpoint(tmp_path)
    assert n_val >= MIN_VAL_PHOTOS
    predictor = Predictor.from_checkpoint(path, device="cpu")
    estimator = estimator_for(predictor, path, dataset_dir=dataset, splits_dir=splits)
    assert estimator is not None and estimator.facts["val_photos"] == n_val
    assert QualityEstimator.load(sidecar_path(path)).facts["model_sha256"] == file_sha256(path)
    assert set(estimator.models) == {TTA_MODEL, PLAIN_MODEL}


def test_scoring_a_checkpoint_elsewhere_keeps_its_estimator_and_overwrite_refits_it(tmp_path, capsys):
    """`seglib evaluate --checkpoint F --out D` fits the estimator beside F once; scoring F again into another --out
    keeps its bytes (a published model's sidecar is not rewritten), --overwrite refits it."""
    from seglib.cli import main

    path, dataset, splits, _ = val_checkpoint(tmp_path)
    common = ["evaluate", "--checkpoint", str(path), "--data-dir", str(dataset), "--splits-dir", str(splits),
              "--quiet", "--split", "val", "--threshold-from", "checkpoint"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert "refitted on val" in capsys.readouterr().out
    sidecar = sidecar_path(path)
    marked = sidecar.read_bytes().replace(b'"model_file": "best.pt"', b'"model_file": "kept.pt"', 1)
    sidecar.write_bytes(marked)  # still this checkpoint's (same SHA-256), with a mark a refit would not write
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    assert "quality: kept" in capsys.readouterr().out and sidecar.read_bytes() == marked
    assert main([*common, "--out", str(tmp_path / "c"), "--overwrite"]) == 0
    assert "refitted on val" in capsys.readouterr().out
    assert b'"model_file": "best.pt"' in sidecar.read_bytes()
    assert QualityEstimator.load(sidecar).facts["model_sha256"] == file_sha256(path)


def test_quality_table_ranks_any_photos_and_skips_a_broken_one(tmp_path, checkpoint, caplog):
    folder = photos(tmp_path / "in")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    toy_estimator(checkpoint).save(sidecar_path(checkpoint))
    table = quality_table(checkpoint, [folder])
    assert list(table.columns[:3]) == ["photo", "predicted_iou", "check"]
    assert [p.rsplit("/", 1)[-1] for p in table["photo"]] == ["p0.png", "p1.png", "p2.png"]
    assert table["predicted_iou"].between(0, 1).all()
    assert any("broken.png" in r.getMessage() for r in caplog.records)
    assert set(FEATURES) <= set(table.columns)


def test_a_table_that_cannot_be_written_leaves_the_earlier_one_whole(tmp_path, checkpoint, monkeypatch):
    import errno
    import os

    import seglib.infra.io as io

    folder, out = photos(tmp_path / "in"), tmp_path / "out"
    assert predict([folder / "p0.png", "--checkpoint", checkpoint, "--out", out]) == 0
    before = (out / QUALITY_TABLE).read_bytes()
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith(QUALITY_TABLE):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", full_disk)
    with pytest.raises(SeglibError, match=f"{QUALITY_TABLE}: cannot write") as info:
        predict([folder / "p1.png", "--checkpoint", checkpoint, "--out", out])
    assert "\n" not in str(info.value)
    assert (out / QUALITY_TABLE).read_bytes() == before  # the earlier table, whole
    assert (out / "p1.mask.png").is_file()  # the masks are written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
