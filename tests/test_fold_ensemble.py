"""seglib.studies.fold_ensemble: the fold runs averaged as one model, and its nested estimate on the folds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seglib.cli import main
from seglib.data.splits import fold_numbers, fold_split, read_split
from seglib.infra import paths
from seglib.infra.errors import ConfigError, DataError, SeglibError
from seglib.profiles import make_config
from seglib.studies.fold_ensemble import EnsembleNetwork, ensemble_predictor, fold_checkpoints


@pytest.fixture
def three_folds(synthetic_dataset, tmp_path, monkeypatch):
    """(dataset, splits) with 3 folds over train+val; runs and reports in tmp_path."""
    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split

    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    table = make_split(check_dataset(synthetic_dataset), seed=0, n_folds=3,
                       fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    write_split(table, tmp_path / "splits")
    return synthetic_dataset, tmp_path / "splits"


def test_an_inner_fold_leaves_both_folds_out_of_training_and_validates_on_the_inner_one(three_folds):
    _, splits = three_folds
    dev = set(read_split("train", splits)["id"]) | set(read_split("val", splits)["id"])
    held = {k: set(fold_split(k, splits)[1]["id"]) for k in fold_numbers(splits)}
    for k in held:
        for j in held:
            if j == k:
                with pytest.raises(DataError, match=f"the inner fold {j} is the fold left out already"):
                    fold_split(k, splits, inner=j)
                continue
            train, val = fold_split(k, splits, inner=j)
            assert set(val["id"]) == held[j]
            assert set(train["id"]) == dev - held[k] - held[j]
    with pytest.raises(DataError, match="no fold 9"):
        fold_split(0, splits, inner=9)


@pytest.mark.parametrize("fold, inner", [(-1, 0), (1, 1), (0, -2)])
def test_an_inner_fold_needs_a_fold_and_another_number(fold, inner):
    with pytest.raises(ConfigError, match=f"fold={fold} and inner_fold={inner}"):
        make_config("smoke", {"fold": fold, "inner_fold": inner})


class _Constant:
    device = "cpu"

    def __init__(self, value):
        self.value = value

    def __call__(self, batch, tta=False):
        return np.full((len(batch), *batch.shape[2:]), self.value, np.float32)


def test_the_ensemble_network_averages_its_members_probabilities():
    batch = np.zeros((2, 3, 4, 5), np.float32)
    out = EnsembleNetwork([_Constant(0.2), _Constant(0.6), _Constant(1.0)])(batch)
    assert out.shape == (2, 4, 5) and out.dtype == np.float32 and np.allclose(out, 0.6)
    with pytest.raises(SeglibError, match="at least one member"):
        EnsembleNetwork([])


def _cli(three_folds, capsys, *argv):
    dataset, splits = three_folds
    data = ["--data-dir", str(dataset), "--splits-dir", str(splits)] if argv[0] == "cv" else []
    code = main([*argv, *data])
    out, err = capsys.readouterr()
    return code, out, err


def test_nested_estimate_trains_inner_runs_scores_their_average_and_the_fold_runs_predict_as_one(
        three_folds, capsys, tmp_path):
    dataset, splits = three_folds
    settings = ["--profile", "smoke", "--set", "input_size=32", "--set", "epochs=1", "--set", "threads=1",
                "--set", "cache_max_side=64"]
    code, _, err = _cli(three_folds, capsys, "cv", "--recipe", "tiny", *settings)
    assert code == 0, err
    # --ensemble trains with the recipe's saved settings: others are refused in one line
    code, _, err = _cli(three_folds, capsys, "cv", "--ensemble", "tiny", "--set", "epochs=2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "leave out --profile, --set" in err
    code, out, err = _cli(three_folds, capsys, "cv", "--ensemble", "tiny")
    assert code == 0, err
    result = json.loads((paths.reports_dir() / "cv" / "tiny-ensemble.json").read_text())
    assert [f["fold"] for f in result["folds"]] == [0, 1, 2] and result["members_per_fold"] == 2
    assert result["ensemble_of"] == "tiny" and "nested" in result["protocol"]
    for score in result["folds"]:
        k = score["fold"]
        others = [j for j in (0, 1, 2) if j != k]
        assert score["members"] == [f"tiny-fold{k}-inner{j}" for j in others]
        assert score["n_images"] == len(fold_split(k, splits)[1])  # scored on the outer fold, which trained none
        assert 0 <= score["mean_iou"] <= 1 and 0 <= score["member_mean_iou"] <= 1
        for j in others:
            import yaml

            saved = yaml.safe_load((paths.runs_dir() / f"tiny-fold{k}-inner{j}" / "config.yaml").read_text())
            assert (saved["fold"], saved["inner_fold"], saved["epochs"], saved["input_size"]) == (k, j, 1, 32)
    assert "tiny-ensemble: mean IoU" in out and "members alone" in out
    log = (paths.reports_dir() / "experiments.csv").read_text()
    assert "\ntiny-ensemble," in log
    # a second call reuses every inner run
    stamp = (paths.runs_dir() / "tiny-fold0-inner1" / "last.pt").stat().st_mtime_ns
    assert _cli(three_folds, capsys, "cv", "--ensemble", "tiny")[0] == 0
    assert (paths.runs_dir() / "tiny-fold0-inner1" / "last.pt").stat().st_mtime_ns == stamp
    # the rule compares it with the recipe fold by fold
    code, out, _ = _cli(three_folds, capsys, "cv", "--compare", "tiny", "tiny-ensemble")
    assert code == 0 and "tiny-ensemble minus tiny" in out
    # the final-model option: the recipe's fold runs averaged, equal to averaging them by hand
    from seglib.predict import Predictor

    checkpoints = fold_checkpoints("tiny")
    assert [p.parent.name for p in checkpoints] == ["tiny-fold0", "tiny-fold1", "tiny-fold2"]
    photo = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    ensemble = ensemble_predictor(checkpoints)
    members = [Predictor.from_checkpoint(p, tta=True) for p in checkpoints]
    by_hand = np.mean([m.predict_proba(photo) for m in members], axis=0)
    assert ensemble.threshold == 0.5 and ensemble.tta
    assert np.allclose(ensemble.predict_proba(photo), by_hand, atol=1e-5)
    from PIL import Image

    Image.fromarray(photo).save(tmp_path / "photo.png")
    code, out, err = _cli(three_folds, capsys, "predict", "--ensemble", "tiny", str(tmp_path / "photo.png"),
                          "--out", str(tmp_path / "masks"))
    assert code == 0, err
    assert "the average of 3 models" in out and "threshold 0.5 (as on the folds)" in out
    assert Image.open(tmp_path / "masks" / "photo.mask.png").size == (30, 40)
    # after the decision, the inner runs are described on an external set (a stand-in for Penn-Fudan): each
    # fold's average, and each inner run alone
    import csv

    from conftest import photo_folders

    from seglib.data.external import pairs_from_folders
    from seglib.studies.fold_ensemble import external_check

    images, masks = photo_folders(tmp_path / "external", n=3)
    path = external_check("tiny", pairs_from_folders(images, masks, name="pennfudan"), splits_dir=splits)
    rows = list(csv.DictReader(path.open()))
    assert path.name == "pennfudan-check-tiny-ensemble.csv"
    assert [r["recipe"] for r in rows] == ["tiny-ensemble"] * 3 + ["tiny-ensemble-members"] * 6
    assert rows[0]["fold_run"] == "tiny-fold0-inner* (2 averaged)" and rows[3]["fold_run"] == "tiny-fold0-inner1"
    assert {r["n_images"] for r in rows} == {"3"} and all(0 <= float(r["pennfudan_mean_iou"]) <= 1 for r in rows)


def test_an_ensemble_of_a_recipe_without_fold_runs_is_refused_in_one_line(three_folds, capsys, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    code, _, err = _cli(three_folds, capsys, "predict", "--ensemble", "nothing", str(tmp_path / "photo.png"),
                        "--out", str(tmp_path / "masks"))
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "nothing-fold0: no fold run of nothing" in err and "seglib cv --recipe nothing" in err
    assert not (tmp_path / "masks").exists()
    code, _, err = _cli(three_folds, capsys, "cv", "--ensemble", "nothing")
    assert code != 0 and "nothing.json: no cross-validation result" in err
