"""seglib.studies.label_curve: the labelling simulation, ranked photos against random ones, resumable."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from seglib.infra.errors import ConfigError, SeglibError
from seglib.studies import label_curve
from seglib.studies.label_curve import RANDOM, RANKED, CurvePlan, curve_config, simulate

TINY = {"input_size": 32, "cache_max_side": 64, "epochs": 1, "limit_val": 4, "threads": 1}


@pytest.fixture
def folded(tmp_path):
    """(dataset, splits) of 16 synthetic photos with 2 folds over train+val."""
    from conftest import make_dataset

    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split

    dataset = make_dataset(tmp_path / "raw", n=16)
    table = make_split(check_dataset(dataset), seed=0, n_folds=2, fractions={"train": 0.7, "val": 0.15, "test": 0.15})
    splits = tmp_path / "splits"
    write_split(table, splits)
    return dataset, splits


def test_a_tiny_simulation_writes_both_lines_and_goes_on_from_its_saved_results(folded, tmp_path):
    dataset, splits = folded
    out = tmp_path / "curve"
    cfg = curve_config("smoke", TINY)
    plan = CurvePlan(start=2, step=2, steps=2, repeats=1, folds=(1,))
    table = simulate(cfg, plan, out_dir=out, dataset_dir=dataset, splits_dir=splits)
    written = pd.read_csv(out / "curve.csv")
    assert sorted(set(written["strategy"])) == [RANDOM, RANKED]
    assert written.groupby("strategy")["labelled"].apply(list).to_dict() == {RANDOM: [2, 4], RANKED: [2, 4]}
    assert (out / "curve.png").stat().st_size > 0 and len(table) == 4
    assert written["fold"].eq(1).all() and written["mean_iou"].between(0, 1).all()
    first = written[written["labelled"] == 2].set_index("strategy")["mean_iou"]
    assert first[RANKED] == first[RANDOM]  # one training serves both strategies' first point
    saved = {s: json.loads((out / "results" / f"{s}-r0-n4.json").read_text()) for s in (RANKED, RANDOM)}
    from seglib.data.splits import fold_split

    pool, held_out = fold_split(1, splits)
    for result in saved.values():
        assert len(set(result["labelled"])) == 4 and set(result["labelled"]) <= set(pool["id"].astype(str))
        assert not set(result["labelled"]) & set(held_out["id"].astype(str))  # the scoring fold never trains
    kept = {path.name: path.stat().st_mtime_ns for path in (out / "results").glob("*.json")}
    # other settings are refused rather than mixed in; one more size goes on from the saved results, reused as
    # they are (what a stopped run does too: each result is saved as it finishes)
    with pytest.raises(SeglibError, match="other settings.*step"):
        simulate(cfg, CurvePlan(start=2, step=1, steps=2, repeats=1, folds=(1,)), out_dir=out, dataset_dir=dataset,
                 splits_dir=splits)
    longer = simulate(cfg, CurvePlan(start=2, step=2, steps=3, repeats=1, folds=(1,)), out_dir=out,
                      dataset_dir=dataset, splits_dir=splits)
    assert longer.groupby("strategy")["labelled"].apply(list).to_dict() == {RANDOM: [2, 4, 6], RANKED: [2, 4, 6]}
    assert {name: (out / "results" / name).stat().st_mtime_ns for name in kept} == kept
    six = json.loads((out / "results" / f"{RANKED}-r0-n6.json").read_text())
    assert set(six["labelled"]) == set(saved[RANKED]["labelled"]) | set(saved[RANKED]["next"])


def test_a_plan_larger_than_the_pool_is_refused_before_training(folded, tmp_path):
    dataset, splits = folded
    with pytest.raises(ConfigError, match="fewer than the 40"):
        simulate(curve_config("smoke", TINY), CurvePlan(start=20, step=20, steps=2, repeats=1), out_dir=tmp_path / "c",
                 dataset_dir=dataset, splits_dir=splits)
    with pytest.raises(ConfigError, match="steps=0"):
        CurvePlan(steps=0).check()


def curve_table() -> pd.DataFrame:
    rows = []
    for repeat, shift in enumerate((0.0, 0.02)):
        for size, random, ranked in ((20, 0.80, 0.80), (40, 0.84, 0.87), (60, 0.86, 0.88)):
            rows += [{"strategy": RANDOM, "labelled": size, "repeat": repeat, "mean_iou": random + shift},
                     {"strategy": RANKED, "labelled": size, "repeat": repeat, "mean_iou": ranked + shift}]
    return pd.DataFrame(rows)


def test_the_answer_says_with_how_many_labels_ranked_photos_reach_random_ones_final_iou():
    table = curve_table()
    reach = label_curve.labels_to_reach(table)
    assert reach["target"] == pytest.approx(0.87) and reach["labels"] == {RANDOM: 60, RANKED: 40}
    diffs = label_curve.paired_differences(table).set_index("labelled")
    assert diffs.loc[40, "difference"] == pytest.approx(0.03) and diffs.loc[40, "ranked_better"] == 2
    text = label_curve.describe_curve(table)
    assert "ranked photos reach it with 40 labelled photos" in text and "60 labelled: ranked - random +0.0200" in text
    summary = label_curve.curve_summary(table).set_index(["strategy", "labelled"])
    assert summary.loc[(RANKED, 20), "low"] == pytest.approx(0.80) and summary.loc[(RANKED, 20), "repeats"] == 2


def test_the_command_redraws_the_curve_from_saved_results(tmp_path, capsys):
    from seglib.cli import main

    results = tmp_path / "c" / "results"
    results.mkdir(parents=True)
    for row in curve_table().itertuples(index=False):
        (results / f"{row.strategy}-r{row.repeat}-n{row.labelled}.json").write_text(json.dumps(
            {"strategy": row.strategy, "repeat": row.repeat, "fold": row.repeat, "labelled": [str(i) for i in
             range(row.labelled)], "next": [], "mean_iou": row.mean_iou, "boundary_iou": 0.5, "n_scored": 10}))
    assert main(["label-curve", "--plot-only", "--out", str(tmp_path / "c")]) == 0
    assert "ranked photos reach it with 40" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "c" / "curve.csv")) == 12 and (tmp_path / "c" / "curve.png").is_file()
    assert label_curve.read_curve(tmp_path / "nothing") is None


def test_the_command_refuses_to_write_into_the_data(capsys):
    from seglib.cli import main
    from seglib.infra import paths

    assert main(["label-curve", "--plot-only", "--out", str(paths.splits_dir() / "curve")]) == 2
    assert "the splits folder; refusing to write there" in capsys.readouterr().err
    assert not (paths.splits_dir() / "curve").exists()
