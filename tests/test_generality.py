"""seglib.studies.generality and seglib.studies.domains: every candidate and both anchors on every registered set's
test split, compared with the best anchor photo by photo; the multi-domain val score, from val splits only."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import photo_folders, save_tiny_checkpoint
from test_experiments import fake_run

from seglib.cli import main
from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.studies import candidates, domains, generality
from seglib.studies.anchors import ANCHOR_NAMES, NO_POSE, POSE, SELFIE, TITLES
from seglib.studies.domains import Scored, multi_domain_val, saved_multi_domain_val

N_PHOTOS = 14  # the fewest a set may have to be split three ways


@pytest.fixture
def sets(tmp_path, monkeypatch, capsys):
    """Two tiny registered sets with splits (syna, synb) and a third whose photos are gone; no built-in set."""
    monkeypatch.setattr(paths, "BUILTIN_DATASETS_DIR", tmp_path / "builtin")
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    monkeypatch.setenv("SEGLIB_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    for name, seed in (("syna", 0), ("synb", 1), ("gone", 2)):
        images, masks = photo_folders(tmp_path / name, n=N_PHOTOS, seed=seed, scale_every=0)
        assert main(["data", "add", name, "--images", str(images), "--masks", str(masks)]) == 0
        assert main(["data", "split", name, "--folds", "0", "--seed", "0"]) == 0
    shutil.rmtree(tmp_path / "gone")
    capsys.readouterr()
    return tmp_path


def trained_on(tmp_path, name: str) -> object:
    """A tiny untrained checkpoint whose record says it trained on set `name`'s train split (validated on its val)."""
    import torch

    from seglib.checkpoint import save_checkpoint

    path = save_tiny_checkpoint(tmp_path / "ckpt" / f"{name}.pt")
    state = torch.load(path, weights_only=False)
    split = tmp_path / "data" / "splits" / name
    ids = {s: pd.read_csv(split / f"{s}.csv", dtype=str)["id"].tolist() for s in ("train", "val")}
    state["data_split"] = {"datasets": [name], "train_ids": ids["train"], "val_ids": ids["val"]}
    return save_checkpoint(state, path)


def anchor_folder(root, folder: str, split: str, ious, ids, **extra) -> None:
    """Saved per-photo scores of an anchor, as `seglib anchor` writes them."""
    (root / folder / split).mkdir(parents=True)
    pd.DataFrame({"id": ids, "iou": ious, "boundary_iou": np.asarray(ious) / 2}).to_csv(
        root / folder / split / "per_image.csv", index=False)
    (root / folder / split / "metrics.json").write_text(json.dumps({"split": split, **extra}))


def test_set_status_names_what_is_here_and_what_is_not(sets):
    assert domains.set_status() == {"gone": domains.NOT_FETCHED, "syna": "", "synb": ""}
    assert domains.present_sets() == ["syna", "synb"]
    assert (domains.split_folder("syna", "val"), domains.split_folder("human-seg", "test")) == ("syna-val", "test")


def test_the_table_compares_every_row_with_the_best_anchor_photo_by_photo(sets, tmp_path):
    ckpt = trained_on(tmp_path, "syna")
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": [
        {"name": "tiny", "checkpoint": str(ckpt), "about": "a tiny U-Net trained on syna"},
        {"name": "elsewhere", "checkpoint": "runs/nowhere/model.pt", "about": "a model scored on another machine"},
        {"name": "never", "checkpoint": "runs/never/model.pt", "about": "a model never scored"}]}))
    anchors = tmp_path / "anchors"
    test_ids = {n: pd.read_csv(tmp_path / "data" / "splits" / n / "test.csv", dtype=str)["id"].tolist()
                for n in ("syna", "synb")}
    # selfie is the better anchor on syna, Pose on synb (which missed a person on one photo)
    scores = {(name, m): np.linspace(low, low + 0.1, len(test_ids[name])) for name, m, low in (
        ("syna", SELFIE, 0.8), ("syna", POSE, 0.4), ("synb", SELFIE, 0.2), ("synb", POSE, 0.6))}
    for (name, m), ious in scores.items():
        anchor_folder(anchors, ANCHOR_NAMES[m], f"{name}-test", ious, test_ids[name],
                      **({NO_POSE: int(name == "syna")} if m == POSE else {}))
    out = tmp_path / "gen"
    generality.run_study(models, out, anchors, n_boot=200)
    shutil.copytree(out / "tiny" / "syna-test", out / "elsewhere" / "syna-test")  # its cell, committed elsewhere
    table = generality.run_study(models, out, anchors, n_boot=200)

    cell = table.set_index(["row", "set"])
    assert bool(cell.loc[("tiny", "syna"), "in_domain"]) and not bool(cell.loc[("tiny", "synb"), "in_domain"])
    assert cell.loc[("tiny", "gone"), "status"] == domains.NOT_FETCHED
    assert cell.loc[("elsewhere", "synb"), "status"] == generality.NO_CHECKPOINT
    assert cell.loc[("elsewhere", "syna"), "mean_iou"] == cell.loc[("tiny", "syna"), "mean_iou"]
    assert "never" not in set(table["row"])  # neither its checkpoint nor a cell: no row
    assert cell.loc[("tiny", "syna"), "best_anchor"] == SELFIE and cell.loc[("tiny", "synb"), "best_anchor"] == POSE
    for name, best in (("syna", scores[("syna", SELFIE)]), ("synb", scores[("synb", POSE)])):
        ours = pd.read_csv(out / "tiny" / f"{name}-test" / "per_image.csv", dtype={"id": str}).set_index("id")
        diff = ours.loc[test_ids[name], "iou"].to_numpy() - best
        assert cell.loc[("tiny", name), "minus_best_anchor"] == pytest.approx(diff.mean())
        assert cell.loc[("tiny", name), "better_photos"] == (diff > 0).sum()
        assert cell.loc[("tiny", name), "diff_low"] <= diff.mean() <= cell.loc[("tiny", name), "diff_high"]
    # the weaker anchor is compared with the better one; the better one with nothing
    assert cell.loc[(TITLES[POSE], "syna"), "minus_best_anchor"] == pytest.approx(-0.4, abs=1e-5)
    assert pd.isna(cell.loc[(TITLES[SELFIE], "syna"), "minus_best_anchor"])
    assert cell.loc[(TITLES[POSE], "syna"), NO_POSE] == 1
    assert cell.loc[(TITLES[SELFIE], "synb"), "mean_boundary_iou"] == pytest.approx(scores[("synb", SELFIE)].mean() / 2)
    text = (out / "table.md").read_text()
    n_a, n_b = len(test_ids["syna"]), len(test_ids["synb"])
    assert text.splitlines()[0].startswith(f"| model | syna test split, {n_a} photos | synb test split, {n_b} photos |")
    assert "| `tiny`: a tiny U-Net trained on syna | **" in text and "not fetched" in text
    assert "vs MediaPipe Pose" in text and "no person found on 1" in text and "checkpoint not here" in text
    assert list(pd.read_csv(out / "table.csv").columns) == generality.COLUMNS
    # scored once: a second study reuses the saved scores
    saved = (out / "tiny" / "syna-test" / "metrics.json").read_text()
    generality.run_study(models, out, anchors, n_boot=200)
    assert (out / "tiny" / "syna-test" / "metrics.json").read_text() == saved


def test_an_anchor_scored_on_a_whole_set_is_read_for_the_split_s_photos(sets, tmp_path):
    ids = pd.read_csv(tmp_path / "data" / "splits" / "synb" / "test.csv", dtype=str)["id"].tolist()
    everything = [f"p{i:02d}" for i in range(N_PHOTOS)]
    anchor_folder(tmp_path / "anchors", "mediapipe-selfie", "synb", [0.5] * N_PHOTOS, everything)
    table = generality.build_table([], {"synb": ""}, tmp_path / "gen", tmp_path / "anchors", n_boot=50)
    row = table.set_index("row").loc[TITLES[SELFIE]]
    assert row["n_images"] == len(ids) and row["mean_iou"] == pytest.approx(0.5)
    assert table.set_index("row").loc[TITLES[POSE], "status"] == generality.NOT_SCORED


def test_the_multi_domain_val_score_is_the_mean_over_sets_of_val_splits_only(sets, tmp_path):
    ckpt = trained_on(tmp_path, "syna")
    model = Scored.of_checkpoint("tiny", ckpt, tmp_path / "gen" / "tiny", tta=False)
    result = multi_domain_val(model)

    own = pd.read_csv(tmp_path / "gen" / "tiny" / "val" / "per_image.csv")
    other = pd.read_csv(tmp_path / "gen" / "tiny" / "synb-val" / "per_image.csv")
    assert result["sets"]["syna"]["mean_iou"] == pytest.approx(own["iou"].mean(), abs=1e-5)  # CSV rounding
    assert result["sets"]["synb"]["scored_as"] == "synb-val" and result["not_present"] == ["gone"]
    assert result["mean_iou"] == pytest.approx((own["iou"].mean() + other["iou"].mean()) / 2, abs=1e-5)
    assert result["mean_boundary_iou"] == pytest.approx((own["boundary_iou"].mean()
                                                         + other["boundary_iou"].mean()) / 2, abs=1e-5)
    # the other set's val scored with the model's own val threshold; no test split touched
    synb = json.loads((tmp_path / "gen" / "tiny" / "synb-val" / "metrics.json").read_text())
    assert synb["threshold"] == result["threshold"] and synb["threshold_source"] == "val sweep"
    assert not list((tmp_path / "gen" / "tiny").glob("*test*"))
    assert saved_multi_domain_val(tmp_path / "gen" / "tiny", epoch=1)["mean_iou"] == result["mean_iou"]
    assert saved_multi_domain_val(tmp_path / "gen" / "tiny", epoch=2) is None


def test_a_record_is_rewritten_only_when_what_it_says_changes(tmp_path):
    """Scoring a model again (a committed record among them) must not dirty the tree with a new time alone."""
    path = tmp_path / "multi_domain_val.json"
    record = domains.val_record("m", {"checkpoint": "m.pt", "checkpoint_epoch": 3, "tta": True, "threshold": 0.5},
                                ["a"], {"a": {"mean_iou": 0.9, "mean_boundary_iou": 0.7}}, [])
    domains.write_val_record(path, record)
    written = path.read_bytes()
    domains.write_val_record(path, {**record, "computed_at": "2030-01-01T00:00:00+00:00"})
    assert path.read_bytes() == written
    domains.write_val_record(path, {**record, "threshold": 0.55})
    assert json.loads(path.read_text())["threshold"] == 0.55


def _scores(model: str, **per_set) -> dict:
    return {"model": model, "sets": {name: {"iou_by_photo": {str(i): v for i, v in enumerate(values)}}
                                     for name, values in per_set.items()}}


def test_the_paired_val_difference_weighs_each_set_equally_and_its_ci_resamples_each_set():
    from seglib.studies.domains import describe_difference, paired_val_difference

    base = _scores("a", small=[0.5, 0.6], large=[0.8] * 100)
    better = _scores("b", small=[0.6, 0.7], large=[0.8] * 100)  # +0.1 on 2 photos of one set, level on the other
    d = paired_val_difference(better, base)
    assert d["difference"] == pytest.approx(0.05) and d["by_set"] == pytest.approx({"small": 0.1, "large": 0.0})
    assert d["ci95"] == pytest.approx([0.05, 0.05]) and (d["better"], d["n"]) == (2, 102)
    noisy = _scores("c", small=[0.9, 0.3], large=[0.8] * 100)  # +0.4 and -0.3: the CI spans 0
    low, high = paired_val_difference(noisy, base)["ci95"]
    assert low < 0 < high
    line = describe_difference(better, base, 0.005)
    assert line.startswith("b minus a: +0.0500 (95% CI +0.0500 to +0.0500") and "more than the rule's +0.005" in line
    with pytest.raises(SeglibError, match="not the same small val photos"):
        paired_val_difference(_scores("d", small=[0.5], large=[0.8] * 100), base)
    with pytest.raises(SeglibError, match="other sets"):
        paired_val_difference(_scores("e", small=[0.5, 0.6]), base)


def test_a_model_of_one_set_pairs_with_a_model_of_several_photo_by_photo():
    """A model of several sets qualifies its val ids (`small/0`), a model of one set and another set's val split
    do not (`0`): the same photos, paired."""
    from seglib.studies.domains import paired_val_difference, set_entry

    one = {"model": "one", "sets": {"small": set_entry("small", pd.DataFrame(
        {"id": ["0", "1"], "iou": [0.5, 0.6], "boundary_iou": [0.4, 0.5]}), "val")}}
    several = {"model": "several", "sets": {"small": set_entry("small", pd.DataFrame(
        {"id": ["small/0", "small/1"], "iou": [0.6, 0.7], "boundary_iou": [0.4, 0.5]}), "val")}}
    assert several["sets"]["small"]["iou_by_photo"] == {"0": 0.6, "1": 0.7}
    assert paired_val_difference(several, one)["difference"] == pytest.approx(0.1)
    written_before = {"model": "old", "sets": {"small": {"iou_by_photo": {"small/0": 0.5, "small/1": 0.6}}}}
    assert paired_val_difference(several, written_before)["difference"] == pytest.approx(0.1)


def test_generality_val_of_two_models_prints_the_second_minus_the_first(sets, tmp_path, capsys):
    ckpt = trained_on(tmp_path, "synb")
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": [{"name": "tiny", "checkpoint": str(ckpt), "about": "tiny"},
                                                 {"name": "twin", "checkpoint": str(ckpt), "about": "the same"}]}))
    assert main(["generality", "--val", "tiny", "twin", "--no-tta", "--models", str(models), "--out",
                 str(tmp_path / "g"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "twin minus tiny: +0.0000 (95% CI +0.0000 to +0.0000" in out and "better on 0 of" in out
    # a saved record (an edge-head variant's) pairs as it is: here tiny's own, each photo's IoU 0.1 lower
    record = json.loads((tmp_path / "g" / "tiny" / "multi_domain_val.json").read_text())
    record["model"] = "tiny @lower"
    for entry in record["sets"].values():
        entry["iou_by_photo"] = {k: v - 0.1 for k, v in entry["iou_by_photo"].items()}
    (tmp_path / "lower.json").write_text(json.dumps(record))
    assert main(["generality", "--val", "tiny", str(tmp_path / "lower.json"), "--no-tta", "--models", str(models),
                 "--out", str(tmp_path / "g"), "--quiet"]) == 0
    assert "tiny @lower minus tiny: -0.1000 (95% CI -0.1000 to -0.1000" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["generality", "--val", "tiny", str(tmp_path / "bad.json"), "--no-tta", "--models", str(models),
                 "--out", str(tmp_path / "g"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not a multi-domain val record" in err and "Traceback" not in err


def test_the_experiment_log_takes_the_multi_domain_val_score(tmp_path, monkeypatch):
    from seglib.studies.experiments import record

    run = fake_run(tmp_path / "runs", "r")
    (run / "eval" / "multi_domain_val.json").write_text(json.dumps({
        "checkpoint_epoch": 47, "mean_iou": 0.81234, "mean_boundary_iou": 0.6,
        "sets": {"a": {"mean_iou": 0.9, "mean_boundary_iou": 0.7}, "b": {"mean_iou": 0.72468, "mean_boundary_iou": 0.5}}}))
    row = record([run], path=tmp_path / "log.csv").set_index("run").loc["r"]
    assert (row["val_multi_domain"], row["val_multi_domain_boundary"]) == ("0.8123", "0.6")
    assert row["val_by_set"] == "a 0.9000/0.7000; b 0.7247/0.5000"


def test_generality_val_prints_per_set_scores_of_a_candidate(sets, tmp_path, capsys):
    ckpt = trained_on(tmp_path, "synb")
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": [{"name": "tiny", "checkpoint": str(ckpt), "about": "tiny"}]}))
    code = main(["generality", "--val", "tiny", "--no-tta", "--models", str(models), "--out", str(tmp_path / "g"),
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "tiny: multi-domain val mean IoU" in out
    assert "  synb: " in out and "(val)" in out and "(syna-val)" in out and "not counted: gone" in out
    assert main(["generality", "--val", "nothing", "--models", str(models)]) == 2
    assert "nothing: neither a trained run" in capsys.readouterr().err
    assert main(["generality", "--val", str(tmp_path / "gone.pt"), "--models", str(models)]) == 2
    assert capsys.readouterr().err.strip().endswith("gone.pt: checkpoint file not found")
    # the table from the saved scores alone: no test split was scored, so the candidate's cells say so
    assert main(["generality", "--no-score", "--models", str(models), "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "| `tiny`: tiny | not scored | not scored | not fetched |" in out and "wrote " in out


def test_a_model_of_several_sets_gives_each_set_its_own_val_rows():
    per_image = pd.DataFrame({"id": ["a/1", "a/2", "b/1", "ab/3"], "iou": [0.1, 0.2, 0.3, 0.4]})
    assert list(domains.own_rows(per_image, "a", ["a", "b", "ab"])["id"]) == ["a/1", "a/2"]
    assert list(domains.own_rows(per_image, "ab", ["a", "b", "ab"])["id"]) == ["ab/3"]
    assert len(domains.own_rows(per_image, "a", ["a"])) == 4  # one set: its ids are not qualified


def _default_table(root, human_seg_iou, human_seg_edges, human_seg_low, human_seg_high=0.1):
    folder = root / "reports" / generality.STUDY
    folder.mkdir(parents=True)
    (folder / candidates.MODELS_FILE).write_text("default: cand\nmodels:\n  - {name: cand, checkpoint: reports/cand/best.pt, about: x}\n")
    base = {"row": "cand", "kind": "model", "about": "", "checkpoint": "reports/cand/best.pt", "status": generality.SCORED,
            "in_domain": True, "n_images": 10, "ci_low": 0.0, "ci_high": 1.0, "best_anchor": "selfie",
            "diff_high": 0.1}
    pd.DataFrame([base | {"set": "human-seg", "mean_iou": human_seg_iou, "mean_boundary_iou": human_seg_edges,
                          "minus_best_anchor": 0.03, "diff_low": human_seg_low, "diff_high": human_seg_high},
                  base | {"set": "viton", "mean_iou": 0.95, "mean_boundary_iou": 0.6, "best_anchor": "pose",
                          "minus_best_anchor": 0.003, "diff_low": 0.002}]).to_csv(folder / "table.csv", index=False)


def test_the_default_line_gives_every_split_s_numbers_and_the_targets_it_misses(tmp_path):
    _default_table(tmp_path, 0.898, 0.657, -0.001)
    text = generality.default_trails(tmp_path)
    assert "ahead of both MediaPipe models photo by photo with the CI above 0 on 1 of 2 test splits" in text
    assert "human-seg +0.030 (-0.001 to +0.100) against MediaPipe selfie" in text
    assert "checkpoint `reports/cand/best.pt`" in text
    assert "its mean IoU 0.898 (target 0.905) and its boundary IoU 0.657 (target 0.75) miss" in text
    assert "on human-seg's its lead over MediaPipe selfie is not shown (the CI, -0.001 to +0.100, holds 0)" in text
    assert "behind" not in text  # viton's CI is above 0


def test_the_default_line_says_where_it_is_behind_an_anchor(tmp_path):
    _default_table(tmp_path, 0.91, 0.76, -0.05, human_seg_high=-0.01)
    text = generality.default_trails(tmp_path)
    assert "Where it still trails: on human-seg's test split it is behind MediaPipe selfie (+0.030, -0.050 to -0.010)." \
        in text


def test_the_default_line_says_nothing_of_targets_it_reaches(tmp_path):
    _default_table(tmp_path, 0.91, 0.76, 0.01)
    text = generality.default_trails(tmp_path)
    assert "on 2 of 2 test splits" in text and "trails" not in text


def _saved_cell(folder, ious, trained_on=("syna",)):
    """A candidate's committed cell on a test split, as `seglib generality` saves it."""
    folder.mkdir(parents=True)
    ids = [f"p{i}" for i in range(len(ious))]
    pd.DataFrame({"id": ids, "iou": ious, "boundary_iou": np.asarray(ious) - 0.2}).to_csv(
        folder / "per_image.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"split": "test", "trained_on": list(trained_on)}))


def test_runs_of_a_recipe_with_other_seeds_are_its_spread_under_the_table_not_rows(tmp_path):
    out = tmp_path / "gen"
    listed = [candidates.Candidate("cand", "runs/cand.pt", "the recipe"),
              candidates.Candidate("cand-s43", "runs/s43.pt", "seed 43", seed_of="cand"),
              candidates.Candidate("cand-s44", "runs/s44.pt", "seed 44", seed_of="cand")]
    for name, ious in (("cand", [0.9, 0.8]), ("cand-s43", [0.8, 0.8]), ("cand-s44", [0.7, 0.9])):
        _saved_cell(out / name / "syna-test", ious)
    table = generality.build_table(listed, {"syna": domains.NOT_FETCHED}, out, tmp_path / "anchors", n_boot=50)
    models = table[table["kind"] != generality.ANCHOR]
    assert list(models["kind"]) == [generality.MODEL, generality.SEED, generality.SEED]
    assert list(models["seed_of"]) == ["", "cand", "cand"]
    text = generality.markdown(table)
    assert "| `cand`: the recipe |" in text and "`cand-s43`:" not in text.split("Checkpoints:")[0]
    assert ("Runs of `cand`'s recipe with other seeds, nothing else changed (`cand-s43`, `cand-s44`; nothing is chosen "
            "with them), on each test split: syna 0.800 and 0.800, edges 0.600 and 0.600 (`cand`: 0.850, edges "
            "0.650).") in text
