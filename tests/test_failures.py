"""seglib.evaluate.failure_analysis: attributes measured from images and masks, category tables, the summary sentence, worst-k,
and reusing saved evaluations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import save_tiny_checkpoint

from seglib.evaluate import failure_analysis as failures
from seglib.infra.errors import SeglibError
from seglib.predict import Predictor


def blank(h=60, w=80, value=128, gray=False):
    image = np.full((h, w, 3), value, np.uint8)
    if not gray:
        image[..., 0] = min(255, value + 20)  # not all channels equal: a colour image
    return image


def box_mask(h=60, w=80, boxes=((10, 20, 50, 60),)):
    mask = np.zeros((h, w), np.uint8)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


def record(id_, image, mask):
    return {"id": id_, "image": image, "mask": mask}


def hand_made():
    """Six images with known attributes and a per_image table with their IoUs."""
    two = box_mask(boxes=((10, 5, 40, 30), (10, 45, 40, 70)))  # two blobs (31%): several people
    speck = box_mask(boxes=((10, 20, 50, 60), (0, 0, 2, 2)))  # one person and a 4-pixel speck (< 2% of it)
    dark = blank(value=30)
    backlit = blank(value=230)
    one = box_mask()
    backlit[one > 0] = 40  # dark figure on a bright background
    tiny = box_mask(boxes=((20, 30, 26, 36),))  # 36 / 4800 px: a small figure
    big = box_mask(boxes=((0, 0, 60, 60),))  # 75%: a large figure
    gray = blank(gray=True)
    recs = [record("two", blank(), two), record("speck", blank(), speck), record("dark", dark, one),
            record("backlit", backlit, one), record("tiny", blank(), tiny), record("big", gray, big),
            record("wide", blank(h=30, w=80), box_mask(h=30, w=80, boxes=((5, 20, 25, 60),)))]
    per_image = pd.DataFrame({"id": [r["id"] for r in recs], "iou": [0.3, 0.8, 0.7, 0.6, 0.2, 0.95, 0.9]})
    return per_image, recs


def test_size_bucket_thresholds():
    assert [failures.size_bucket(f) for f in (0.05, 0.1, 0.4, 0.41)] == ["small", "medium", "medium", "large"]


def test_attributes_from_records_mark_each_category():
    per_image, recs = hand_made()
    a = failures.attributes(per_image, records=recs).set_index("id")
    assert set(failures.CATEGORIES) <= set(a.columns) and len(a) == len(per_image)
    assert a.loc["two", "n_people"] == 2 and a.loc["two", "several_people"]
    assert a.loc["speck", "n_people"] == 1 and not a.loc["speck", "several_people"]
    assert a.loc["dark", "dark"] and not a.loc["two", "dark"]
    assert a.loc["backlit", "backlit"] and not a.loc["backlit", "dark"] and not a.loc["dark", "backlit"]
    assert a.loc["tiny", "small_figure"] and a.loc["big", "large_figure"] and a.loc["two", "medium_figure"]
    assert a.loc["big", "grayscale"] and not a.loc["two", "grayscale"]
    assert a.loc["wide", "unusual_aspect"] and not a.loc["two", "unusual_aspect"]  # 80/30 = 2.67 vs 1.33
    assert a["small_image"].all()  # every hand-made image is under 300 px
    assert a.loc["backlit", "figure_brightness"] < 0.6 * a.loc["backlit", "background_brightness"]


def test_attributes_prefer_per_image_columns():
    per_image, recs = hand_made()
    per_image["mean_brightness"] = 0.1  # the evaluation's own measurement wins over the recomputed one
    per_image["aspect_ratio"] = 1.0
    a = failures.attributes(per_image, records=recs)
    assert a["dark"].all() and not a["unusual_aspect"].any()


def test_attributes_load_masks_from_the_data_set(synthetic_splits):
    folder, splits = synthetic_splits
    from seglib.evaluate import split_items

    ids = split_items("train", folder, splits)["id"].tolist()
    per_image = pd.DataFrame({"id": ids, "iou": np.linspace(0.2, 0.9, len(ids))})
    by_split = failures.attributes(per_image, folder, split="train", splits_dir=splits)
    by_catalog = failures.attributes(per_image, folder)
    assert (by_split["n_people"] == 1).all()  # one ellipse per synthetic photo
    pd.testing.assert_frame_equal(by_split, by_catalog)
    with pytest.raises(SeglibError, match="not in the data set"):
        failures.attributes(pd.DataFrame({"id": ["nope"], "iou": [0.5]}), folder)


def test_category_table_sorted_with_rest_and_difference():
    per_image, recs = hand_made()
    table = failures.category_table(failures.attributes(per_image, records=recs))
    assert list(table.columns) == failures.TABLE_COLUMNS
    assert table["mean_iou"].is_monotonic_increasing
    row = table.set_index("attribute").loc["several_people"]
    assert row["n"] == 1 and row["mean_iou"] == pytest.approx(0.3)
    assert row["rest_mean_iou"] == pytest.approx(per_image["iou"].iloc[1:].mean())
    assert row["difference"] == pytest.approx(row["mean_iou"] - row["rest_mean_iou"])
    small_image = table.set_index("attribute").loc["small_image"]  # holds every image: no rest
    assert small_image["n"] == len(per_image) and np.isnan(small_image["rest_mean_iou"])
    assert "grayscale" in set(table["attribute"])
    assert "grayscale" not in set(failures.category_table(failures.attributes(per_image, records=recs),
                                                          min_n=2)["attribute"])


def test_summary_names_the_worst_category_with_its_n():
    per_image = pd.DataFrame({"id": [str(i) for i in range(10)],
                              "iou": [0.3, 0.4, 0.5, 0.9, 0.85, 0.9, 0.88, 0.92, 0.2, 0.87]})
    flags = pd.DataFrame(False, index=per_image.index, columns=list(failures.CATEGORIES))
    flags.loc[[0, 1, 2], "several_people"] = True  # 3 images, mean 0.40
    flags.loc[[3, 4], "dark"] = True  # no worse than the rest
    flags.loc[[8], "grayscale"] = True  # the single worst image: too few to compare
    flags.loc[:, "medium_figure"] = True
    data = pd.concat([per_image, flags], axis=1)
    table = failures.category_table(data)
    text = failures.failure_summary(table, data["iou"].mean(), data)
    assert text.startswith("The model fails most on images with several people (mean IoU 0.40 over 3 images")
    assert "vs 0.79 on the rest" in text
    assert "dark" not in text.split(".")[0] and "grayscale" not in text.split(".")[0]
    assert "grayscale images (n=1)" in text  # named as too few, not as a failure
    assert "3 of 10 test images score below 0.5" in text


def test_summary_warns_when_the_model_calls_everything_person():
    per_image = pd.DataFrame({"id": list("abcd"), "iou": [0.1, 0.2, 0.5, 0.6], "fg_fraction_pred": 1.0})
    flags = pd.DataFrame(False, index=per_image.index, columns=list(failures.CATEGORIES))
    flags.loc[[0, 1], "small_figure"] = True
    table = failures.category_table(pd.concat([per_image, flags], axis=1))
    text = failures.failure_summary(table, 0.35, per_image)
    assert "small figures (mean IoU 0.15 over 2 images" in text and "almost every pixel person" in text
    assert "almost" not in failures.failure_summary(table, 0.35, per_image.assign(fg_fraction_pred=0.3))


def test_summary_when_nothing_stands_out():
    per_image = pd.DataFrame({"id": list("abcd"), "iou": [0.8, 0.82, 0.81, 0.79]})
    flags = pd.DataFrame(False, index=per_image.index, columns=list(failures.CATEGORIES))
    flags.loc[[0, 1], "dark"] = True
    table = failures.category_table(pd.concat([per_image, flags], axis=1))
    text = failures.failure_summary(table, 0.805, split="val")
    assert text.startswith("No category stands out") and "0.81" in text


def test_worst_k_and_spread_ids():
    per_image = pd.DataFrame({"id": [1, 2, 3, 4, 5], "iou": [0.9, 0.1, 0.5, 0.1, 0.7],
                              "boundary_iou": [0.5, 0.3, 0.2, 0.1, 0.4]})
    worst = failures.worst_k(per_image, 3)
    assert worst["id"].tolist() == ["4", "2", "3"]  # tie on IoU broken by boundary IoU
    assert len(failures.worst_k(per_image, 10)) == 5 and failures.worst_k(per_image, 0).empty
    assert failures.spread_ids(per_image, 3) == ["2", "3", "1"]
    assert failures.spread_ids(per_image, 0) == []


def test_categories_of_lists_short_names():
    per_image, recs = hand_made()
    a = failures.attributes(per_image, records=recs).set_index("id")
    assert failures.categories_of(a.loc["two"])[:2] == ["medium figure", "2 people"]
    notes = failures.category_notes(a.reset_index())
    assert notes["two"].startswith("medium figure, 2 people") and "backlit" in notes["backlit"]


def test_predict_ids_returns_records_in_order_at_mask_size(synthetic_splits, tmp_path):
    folder, splits = synthetic_splits
    predictor = Predictor.from_checkpoint(save_tiny_checkpoint(tmp_path / "r" / "best.pt"))
    from seglib.evaluate import split_items

    ids = split_items("val", folder, splits)["id"].tolist()[::-1]
    recs = failures.predict_ids(predictor, "val", ids, folder, splits_dir=splits)
    assert [r["id"] for r in recs] == ids
    for r in recs:
        assert r["image"].shape == (*r["mask"].shape, 3) and r["pred"].shape == r["mask"].shape
    assert failures.predict_ids(predictor, "val", [], folder, splits_dir=splits) == []
