"""seglib.studies.crossval and data.splits.fold_split: recipes compared on folds of train+val, never on test."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from seglib.checkpoint import load_checkpoint
from seglib.cli import main
from seglib.data.splits import fold_numbers, fold_split, read_split
from seglib.infra import paths
from seglib.infra.errors import ConfigError, DataError, SeglibError
from seglib.profiles import make_config
from seglib.studies.crossval import compare, cross_validate, load_result
from seglib.studies.experiments import record_cv


@pytest.fixture
def folded_splits(synthetic_dataset, tmp_path):
    """(dataset, splits) with 2 folds over train+val."""
    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split

    table = make_split(check_dataset(synthetic_dataset), seed=0, n_folds=2,
                       fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    splits = tmp_path / "splits"
    write_split(table, splits)
    return synthetic_dataset, splits


def test_each_fold_holds_out_part_of_train_val_and_never_test(folded_splits):
    _, splits = folded_splits
    dev = set(read_split("train", splits)["id"]) | set(read_split("val", splits)["id"])
    test = set(read_split("test", splits)["id"])
    held = []
    for fold in fold_numbers(splits):
        train, val = fold_split(fold, splits)
        assert not set(train["id"]) & set(val["id"])
        assert set(train["id"]) | set(val["id"]) == dev
        assert not (set(train["id"]) | set(val["id"])) & test
        held += list(val["id"])
    assert sorted(held) == sorted(dev)  # every train+val photo is held out exactly once


def test_folds_that_no_longer_match_the_split_are_refused(folded_splits):
    _, splits = folded_splits
    folds = pd.read_csv(splits / "folds.csv", dtype={"id": str})
    folds.iloc[1:].to_csv(splits / "folds.csv", index=False)  # one photo dropped
    with pytest.raises(DataError, match="folds.csv: its ids are not exactly the train and val photos"):
        fold_split(0, splits)
    with pytest.raises(DataError, match="no fold 7"):
        folds.to_csv(splits / "folds.csv", index=False)
        fold_split(7, splits)


def test_cross_validation_trains_each_fold_scores_it_and_reuses_it(folded_splits, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    dataset, splits = folded_splits
    cfg = make_config("smoke", {"epochs": 1, "input_size": 32})
    caplog.set_level(logging.INFO, logger="seglib")
    result = cross_validate(cfg, "tiny", dataset_dir=dataset, splits_dir=splits)
    assert [f["fold"] for f in result["folds"]] == [0, 1]
    assert all(0 <= f["mean_iou"] <= 1 for f in result["folds"])
    assert result["mean_iou"] == pytest.approx(sum(f["mean_iou"] for f in result["folds"]) / 2)
    run0 = paths.runs_dir() / "tiny-fold0"
    trained_on = yaml_fold(run0)
    assert trained_on == 0
    # the fold run validated on its held-out photos only
    state_ids = json.loads((run0 / "cv_score.json").read_text())
    assert state_ids["n_images"] == len(fold_split(0, splits)[1])
    # a second call reuses the finished runs and their scores: nothing is trained again
    stamp = (run0 / "last.pt").stat().st_mtime_ns
    caplog.clear()
    again = cross_validate(cfg, "tiny", dataset_dir=dataset, splits_dir=splits)
    assert again["folds"] == result["folds"] and (run0 / "last.pt").stat().st_mtime_ns == stamp
    assert any("reusing" in line for line in caplog.messages)
    # a run saved before a setting existed had that setting's default: still the same recipe, still reused
    import yaml

    saved = yaml.safe_load((run0 / "config.yaml").read_text())
    del saved["distill_weight"], saved["config_schema"]  # a config saved before versions and distillation
    (run0 / "config.yaml").write_text(yaml.safe_dump(saved))
    caplog.clear()
    assert cross_validate(cfg, "tiny", dataset_dir=dataset, splits_dir=splits)["folds"] == result["folds"]
    assert (run0 / "last.pt").stat().st_mtime_ns == stamp and sum("reusing" in line for line in caplog.messages) == 2
    table = record_cv(["tiny"])
    row = table.set_index("run").loc["tiny"]
    assert row["cv_folds"] == "2" and len(row["cv_fold_ious"].split()) == 2
    assert float(row["cv_mean_iou_tta"]) == pytest.approx(round(load_result("tiny")["mean_iou"], 4))
    # boundary refinement scores the same fold runs again, as a recipe of its own name; nothing is retrained
    refined = cross_validate(cfg, "tiny", dataset_dir=dataset, splits_dir=splits, refine=True)
    assert refined["recipe"] == "tiny-refined" and refined["refine"] and "refined" in refined["protocol"]
    assert load_result("tiny-refined")["folds"] == refined["folds"] and load_result("tiny")["folds"] == result["folds"]
    assert (run0 / "last.pt").stat().st_mtime_ns == stamp and (run0 / "cv_score-refined.json").is_file()
    assert [f["n_images"] for f in refined["folds"]] == [f["n_images"] for f in result["folds"]]
    # after the decision, the fold runs are described on an external set (here a stand-in for Penn-Fudan)
    import csv

    from conftest import photo_folders

    from seglib.data.external import pairs_from_folders
    from seglib.studies.crossval import external_check

    images, masks = photo_folders(tmp_path / "external", n=4)
    stand_in = pairs_from_folders(images, masks, name="pennfudan")
    path = external_check("tiny", stand_in, splits_dir=splits)
    rows = list(csv.DictReader(path.open()))
    assert path.name == "pennfudan-check-tiny.csv"
    assert [r["fold_run"] for r in rows] == ["tiny-fold0", "tiny-fold1"] and {r["n_images"] for r in rows} == {"4"}
    assert all(0 <= float(r["pennfudan_mean_iou"]) <= 1 for r in rows)
    with pytest.raises(SeglibError, match="no finished fold run"):
        external_check("untrained", stand_in, splits_dir=splits)


def yaml_fold(run_dir) -> int:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["fold"]


def test_cli_rejects_bad_fold_lists(capsys):
    assert main(["cv", "--recipe", "x", "--profile", "smoke", "--folds", "a,b"]) == 2
    assert "--folds 'a,b'" in capsys.readouterr().err


def saved_result(name: str, ious: list[float], device: str = "cpu") -> None:
    """A cross-validation result as `seglib cv` saves it (the fields compare reads)."""
    path = paths.reports_dir() / "cv" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recipe": name, "device": device,
                                "folds": [{"fold": k, "mean_iou": v} for k, v in enumerate(ious)]}))


def test_compare_applies_the_written_rule(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    saved_result("base", [0.90, 0.88, 0.86])
    saved_result("small", [0.905, 0.884, 0.862])  # +0.004 on average, better on every fold: not enough
    saved_result("big", [0.91, 0.89, 0.865])
    saved_result("gpu", [0.95, 0.95, 0.95], device="cuda")
    small = compare("base", "small")
    assert small["better_on"] == 3 and small["mean_difference"] == pytest.approx(0.0037, abs=1e-4)
    assert not small["adopt"]
    assert compare("base", "big")["adopt"]
    assert not compare("base", "gpu")["adopt"]  # not the same device: not comparable
    saved_result("partial", [0.95, 0.95])  # two folds only: far better on them, still undecided
    assert not compare("base", "partial")["adopt"]
    assert main(["cv", "--compare", "base", "partial"]) == 0
    assert "undecided: the two were not scored on the same folds" in capsys.readouterr().out
    assert main(["cv", "--compare", "base", "big"]) == 0
    out = capsys.readouterr().out
    assert "big minus base: +0.0083 mean over 3 folds (per fold +0.0100 +0.0100 +0.0050), better on 3 of 3" in out
    assert "adopt: more than +0.005" in out
    assert main(["cv", "--compare", "base", "gpu"]) == 0
    assert "not comparable: trained on cpu and cuda" in capsys.readouterr().out
    with pytest.raises(SeglibError, match="no cross-validation result"):
        compare("base", "missing")
    assert main(["cv", "--compare", "base", "missing"]) != 0
    assert "missing.json: no cross-validation result" in capsys.readouterr().err


@pytest.fixture
def cv_cli(folded_splits, tmp_path, monkeypatch):
    """(run `seglib cv ...` in this process -> (code, out, err), runs folder, reports folder)."""
    dataset, splits = folded_splits
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    fast = ["--profile", "smoke", "--set", "input_size=32", "--set", "threads=1", "--set", "cache_max_side=64"]

    def run(capsys, *argv):
        code = main(["cv", *argv, *fast, "--data-dir", str(dataset), "--splits-dir", str(splits)])
        out, err = capsys.readouterr()
        return code, out, err

    return run, tmp_path / "runs", tmp_path / "reports"


def _stamps(*paths) -> dict:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_cv_refuses_to_replace_fold_runs_trained_with_other_settings(cv_cli, capsys):
    """Case 2: a finished fold run with other settings is kept unless --overwrite; the recipe's result and its
    experiment-log row are not rewritten either."""
    run, runs, reports = cv_cli
    assert run(capsys, "--recipe", "r", "--folds", "0", "--set", "epochs=1")[0] == 0
    kept = _stamps(runs / "r-fold0" / "last.pt", runs / "r-fold0" / "config.yaml", reports / "cv" / "r.json",
                   reports / "experiments.csv")
    code, _, err = run(capsys, "--recipe", "r", "--folds", "0", "--set", "epochs=2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "r-fold0: this fold run has other settings (epochs: saved 1, now 2)" in lines[0]
    assert "--overwrite" in lines[0] and "another name" in lines[0]
    assert _stamps(*map(Path, kept)) == kept
    code, out, err = run(capsys, "--recipe", "r", "--folds", "0", "--set", "epochs=2", "--overwrite")
    assert code == 0, err
    assert load_checkpoint(runs / "r-fold0" / "last.pt")["epoch"] == 2
    assert load_result("r")["config"]["epochs"] == 2


@pytest.mark.parametrize("folds, message", [("", "--folds '': expected comma-separated fold numbers"),
                                            ("0,0", "--folds '0,0': fold 0 given twice"),
                                            ("-1", "fold numbers start at 0"),
                                            ("7", "fold 7: not in folds.csv")])
def test_cv_fold_lists_that_are_empty_repeated_or_unknown_are_refused_before_training(cv_cli, capsys, folds,
                                                                                       message):
    run, runs, reports = cv_cli
    code, _, err = run(capsys, "--recipe", "r", "--folds", folds, "--set", "epochs=1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not runs.exists() and not (reports / "cv" / "r.json").exists()  # nothing trained, nothing written


def test_cross_validate_never_counts_a_fold_twice(folded_splits):
    dataset, splits = folded_splits
    with pytest.raises(ConfigError, match="fold 0 given twice"):
        cross_validate(make_config("smoke"), "r", folds=[0, 0], dataset_dir=dataset, splits_dir=splits)


def test_cv_of_a_recipe_in_use_is_refused_at_once(cv_cli, capsys):
    from seglib.infra import locks

    run, runs, reports = cv_cli
    with locks.exclusive(reports / "cv" / "r.json", "cv result r"):  # another `seglib cv --recipe r`
        code, _, err = run(capsys, "--recipe", "r", "--folds", "0", "--set", "epochs=1")
    assert code == 2 and "in use by pid" in err and not runs.exists()
    with locks.exclusive(runs / "r-fold1", "run r-fold1"):  # a `seglib train --run r-fold1`
        code, _, err = run(capsys, "--recipe", "r", "--set", "epochs=1")
    assert code == 2 and "in use by pid" in err and not (runs / "r-fold0").exists()


def test_sigterm_during_cv_stops_cleanly_and_the_same_command_continues(cv_cli, capsys, monkeypatch):
    import os
    import signal

    import seglib.training.progress

    run, runs, reports = cv_cli
    real = seglib.training.progress.write_history

    def save_then_stop(*args):
        real(*args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(seglib.training.progress, "write_history", save_then_stop)
    code, out, err = run(capsys, "--recipe", "r", "--set", "epochs=2")
    assert code == 143 and "Traceback" not in err
    assert "cv r: stopped at fold 0; run the same command again to continue" in out
    assert load_checkpoint(runs / "r-fold0" / "last.pt")["epoch"] == 1 and not (reports / "cv" / "r.json").exists()
    monkeypatch.setattr(seglib.training.progress, "write_history", real)
    code, out, err = run(capsys, "--recipe", "r", "--set", "epochs=2")
    assert code == 0, err
    assert "fold 0: resuming" in out and [f["fold"] for f in load_result("r")["folds"]] == [0, 1]


def test_the_external_check_refuses_a_run_trained_on_a_copy_of_its_photos(tmp_path):
    """A fold run that trained on Penn-Fudan's photos registered under another name is refused by their bytes,
    in one line naming the run (#35: cross-data checks compare content, not set names)."""
    from types import SimpleNamespace

    from conftest import photo_folders

    from seglib.data.external import pairs_from_folders
    from seglib.data.selection import photo_hashes
    from seglib.studies.crossval import check_row

    images, masks = photo_folders(tmp_path / "external", n=3)
    pairs = pairs_from_folders(images, masks)
    record = {"datasets": ["copy"], "train_ids": ["p00"], "photo_sha1": sorted(photo_hashes([images / "p00.jpg"]))}
    predictor = SimpleNamespace(checkpoint={"data_split": record, "epoch": 1})
    with pytest.raises(SeglibError, match=r"runs/r-fold0: cannot check it: .*1 of its 3 photos \(p00\)"):
        check_row("r", "r-fold0", predictor, pairs, where=Path("runs/r-fold0"))
