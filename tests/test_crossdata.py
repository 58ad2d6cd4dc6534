"""The cross-data-set table: cells from models' per-photo scores on each set's test split, in-domain cells marked
by what the model trained on, and the paired difference to MediaPipe on the same photos."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seglib.infra.errors import SeglibError
from seglib.studies.crossdata import ANCHOR, cross_table, gather, markdown


def _result(folder, trained_on, ious, ids):
    folder.mkdir(parents=True)
    pd.DataFrame({"id": ids, "iou": ious}).to_csv(folder / "per_image.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"trained_on": trained_on, "mean_iou": float(np.mean(ious))}))


@pytest.fixture
def two_models(tmp_path):
    """Two models' eval folders (one trained on aa, one on aa and bb) and MediaPipe's scores of both sets."""
    ids_a, ids_b = [f"a{i}" for i in range(6)], [f"b{i}" for i in range(5)]
    evals = {"m1": tmp_path / "runs" / "m1" / "eval", "m2": tmp_path / "runs" / "m2" / "eval"}
    _result(evals["m1"] / "aa-test", ["aa"], [0.9, 0.8, 0.85, 0.95, 0.9, 0.7], ids_a)
    _result(evals["m1"] / "bb-test", ["aa"], [0.5, 0.6, 0.4, 0.55, 0.5], ids_b)
    _result(evals["m2"] / "aa-test", ["aa", "bb"], [0.88, 0.82, 0.86, 0.94, 0.9, 0.72], ids_a)
    _result(evals["m2"] / "bb-test", ["aa", "bb"], [0.8, 0.75, 0.7, 0.85, 0.8], ids_b)
    anchors = tmp_path / "anchors"
    for name, ids in (("aa", ids_a + ["a-extra"]), ("bb", ids_b)):
        (anchors / name).mkdir(parents=True)
        pd.DataFrame({"id": ids, "iou": [0.6] * len(ids)}).to_csv(anchors / name / "per_image.csv", index=False)
    return evals, anchors


def test_the_table_marks_in_domain_cells_and_pairs_each_with_mediapipe_on_the_same_photos(two_models, tmp_path,
                                                                                          monkeypatch):
    evals, anchors = two_models
    out = tmp_path / "crossdata"
    gather(list(evals.values()), ["aa", "bb"], out)
    table = cross_table(out, ["aa", "bb"], anchors=anchors)
    cell = table.set_index(["trained_on", "test_split"])
    assert cell.loc[("aa", "aa"), "in_domain"] and not cell.loc[("aa", "bb"), "in_domain"]
    assert cell.loc[("aa + bb", "bb"), "in_domain"]
    assert cell.loc[("aa", "bb"), "mean_iou"] == pytest.approx(0.51)
    assert cell.loc[("aa", "bb"), "minus_mediapipe"] == pytest.approx(0.51 - 0.6)
    assert cell.loc[("aa", "bb"), "better_photos"] == 0
    low, high = cell.loc[("aa + bb", "bb"), ["ci_low", "ci_high"]]
    assert low < 0.78 < high
    # MediaPipe's row is scored on the models' photos only (not its extra photo of aa)
    assert cell.loc[(ANCHOR, "aa"), "n_images"] == 6
    text = markdown(table, ["aa", "bb"])
    assert text.splitlines()[0] == "| trained on | aa test split | bb test split |"
    assert "| aa | **0.850" in text and text.strip().splitlines()[-1].startswith(f"| {ANCHOR} |")


def test_a_model_without_the_result_is_named_with_the_command_that_makes_it(two_models, tmp_path):
    evals, _ = two_models
    with pytest.raises(SeglibError, match=r"cc-test: no result .*--dataset cc"):
        gather([evals["m1"]], ["aa", "cc"], tmp_path / "out")


def test_two_models_trained_on_the_same_sets_are_refused_not_one_dropped(two_models, tmp_path):
    """`crossdata --run r1 --run r2` with both trained on aa: one line naming both, and nothing written (#35
    case 9: r1 was dropped without a word)."""
    evals, _ = two_models
    twin = tmp_path / "runs" / "m3" / "eval"
    for name in ("aa", "bb"):
        _result(twin / f"{name}-test", ["aa"], [0.1] * (6 if name == "aa" else 5),
                [f"{name[0]}{i}" for i in range(6 if name == "aa" else 5)])
    out = tmp_path / "crossdata"
    with pytest.raises(SeglibError, match=r"m3/eval and .*m1/eval: both models trained on aa"):
        gather([evals["m1"], evals["m2"], twin], ["aa", "bb"], out)
    assert not out.exists() or not any(out.rglob("metrics.json"))
