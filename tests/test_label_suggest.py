"""seglib.label.suggest: unlabelled photos ranked by expected gain, near-identical photos not all picked."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import draw_pair, save_tiny_checkpoint
from PIL import Image

from seglib.infra.errors import ConfigError
from seglib.label.suggest import (
    UNCERTAINTY_GAIN,
    greedy_pick,
    mask_uncertainty,
    photo_descriptor,
    rank_photos,
)


class FlatPredictor:
    """A stand-in for a Predictor (ranked with gain="uncertainty": no quality estimate asked of it). Predicts one probability everywhere: 0.55 (doubtful) on bright photos, 0.95 (sure) on the others."""

    threshold = 0.5
    source = "flat"

    def predict_proba_batch(self, images):
        return [np.full(img.shape[:2], 0.55 if img.mean() > 128 else 0.95, np.float32) for img in images]


def photos_with_copies(folder, copies: int = 10, distinct: int = 6) -> tuple[list, list]:
    """(copy paths, distinct paths): `copies` files of one bright photo, `distinct` different dark ones."""
    rng = np.random.default_rng(3)
    photo, _ = draw_pair(rng, 64, 48)
    bright = np.clip(np.asarray(photo).astype(int) + 140, 0, 255).astype(np.uint8)
    copy_paths = []
    for i in range(copies):
        path = folder / f"copy{i:02d}.png"
        Image.fromarray(bright).save(path)
        copy_paths.append(path)
    distinct_paths = []
    for i in range(distinct):
        photo, _ = draw_pair(np.random.default_rng(100 + i), 64, 48)
        path = folder / f"other{i:02d}.png"
        photo.save(path)
        distinct_paths.append(path)
    return copy_paths, distinct_paths


def test_ten_copies_of_one_photo_are_not_all_picked(tmp_path):
    copies, others = photos_with_copies(tmp_path)
    photos = copies + others
    # uncertainty alone: the copies first
    plain = rank_photos(FlatPredictor(), photos, n=6, diversity=0.0, gain=UNCERTAINTY_GAIN)
    assert plain["photo"].isin(map(str, copies)).sum() == 6
    ranked = rank_photos(FlatPredictor(), photos, n=6, gain=UNCERTAINTY_GAIN)
    picked_copies = ranked["photo"].isin(map(str, copies))
    assert picked_copies.sum() == 1 and picked_copies.iloc[0]  # the most doubtful first, then other scenes
    assert ranked["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert ranked.loc[0, "similarity"] == 0.0 and (ranked["similarity"] < 0.99).all()
    assert list(ranked.columns[:5]) == ["rank", "photo", "gain", "uncertainty", "similarity"]


def test_a_photo_like_one_labelled_already_is_held_back(tmp_path):
    copies, others = photos_with_copies(tmp_path, copies=3, distinct=3)
    ranked = rank_photos(FlatPredictor(), [*copies[1:], *others], n=1, gain=UNCERTAINTY_GAIN, labelled=copies[:1])
    assert ranked.loc[0, "photo"] in map(str, others)  # the doubtful copies are like a labelled photo


def test_every_photo_is_ranked_once_and_an_unreadable_one_is_skipped_and_reported(tmp_path, caplog):
    copies, others = photos_with_copies(tmp_path, copies=3, distinct=3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    ranked = rank_photos(FlatPredictor(), [*copies, broken, *others], gain=UNCERTAINTY_GAIN)
    assert sorted(ranked["photo"]) == sorted(map(str, copies + others))
    assert [path for path, _ in ranked.attrs["skipped"]] == [str(broken)]
    assert "broken.jpg" in caplog.text
    assert ranked["gain"].is_monotonic_decreasing  # a gain only shrinks as photos are picked


def test_a_real_predictor_ranks_photo_files(tmp_path):
    from seglib.predict import Predictor

    predictor = Predictor.from_checkpoint(save_tiny_checkpoint(tmp_path / "tiny.pt"), tta=False)
    copies, others = photos_with_copies(tmp_path, copies=4, distinct=4)
    ranked = rank_photos(predictor, copies + others, n=3, gain=UNCERTAINTY_GAIN)
    assert len(ranked) == 3 and ranked["uncertainty"].between(0, 1).all()
    assert ranked["photo"].isin(map(str, copies)).sum() <= 1


def test_predicted_ious_rank_where_known_and_uncertainty_elsewhere(tmp_path):
    import pandas as pd

    from seglib.infra.errors import SeglibError
    from seglib.label.suggest import QUALITY_GAIN

    _, others = photos_with_copies(tmp_path, copies=1, distinct=3)
    quality = pd.DataFrame({"photo": [str(p) for p in others], "predicted_iou": [0.9, float("nan"), 0.2]})
    ranked = rank_photos(FlatPredictor(), others, diversity=0.0, quality=quality).set_index("photo")
    assert ranked.loc[str(others[2]), "rank"] == 1 and ranked.loc[str(others[2]), "gain"] == pytest.approx(0.8)
    assert ranked.loc[str(others[1]), "gain"] == pytest.approx(ranked.loc[str(others[1]), "uncertainty"])
    bare = rank_photos(FlatPredictor(), others)  # a bare predictor and no table: its own doubt
    assert "predicted_iou" not in bare.columns
    with pytest.raises(SeglibError, match="no predicted IoU"):
        rank_photos(FlatPredictor(), others, gain=QUALITY_GAIN)


def test_a_checkpoint_without_val_photos_ranks_by_uncertainty(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIB_DATA_DIR", str(tmp_path / "no-data"))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    _, others = photos_with_copies(tmp_path, copies=1, distinct=3)
    ranked = rank_photos(checkpoint, others, diversity=0.0)
    assert ranked["predicted_iou"].isna().all() and ranked["gain"].tolist() == ranked["uncertainty"].tolist()


def test_mask_uncertainty_is_zero_when_sure_and_high_when_doubtful():
    sure = np.zeros((10, 10))
    sure[2:6, 2:6] = 1.0
    assert mask_uncertainty(sure) == 0.0
    assert mask_uncertainty(np.zeros((4, 4))) == 0.0  # no person, no doubt
    doubtful = np.where(sure > 0, 0.6, 0.3)
    assert mask_uncertainty(doubtful) > 0.5
    assert mask_uncertainty(np.where(sure > 0, 0.9, 0.05)) < mask_uncertainty(doubtful)


def test_descriptor_calls_a_brighter_copy_the_same_scene_and_another_scene_different():
    rng = np.random.default_rng(0)
    a = np.asarray(draw_pair(rng, 80, 60)[0])
    b = np.asarray(draw_pair(rng, 80, 60)[0])
    brighter = np.clip(a.astype(int) + 30, 0, 255).astype(np.uint8)
    assert photo_descriptor(a) @ photo_descriptor(brighter) > 0.99
    assert photo_descriptor(a) @ photo_descriptor(b) < 0.9
    assert not photo_descriptor(np.full((5, 7, 3), 99, np.uint8)).any()  # flat: similar to nothing


def test_greedy_pick_discounts_by_similarity_to_the_photos_already_picked():
    vectors = np.eye(3)[[0, 0, 1]]  # photos 0 and 1 identical, photo 2 different
    order, gains, sims = greedy_pick(np.array([0.9, 0.8, 0.3]), vectors, 3, 0.5)
    assert order == [0, 2, 1] and sims == [0.0, 0.0, 1.0] and gains[2] == 0.0


@pytest.mark.parametrize("kwargs, message", [({"n": 0}, "n=0"), ({"diversity": 1.5}, "diversity=1.5"),
                                             ({"gain": "luck"}, "gain='luck'")])
def test_bad_choices_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        rank_photos(FlatPredictor(), [], **kwargs)


def test_a_sample_of_a_split_of_several_sets_shares_its_photos_equally_among_them():
    """Notebook 07 on the default's test split (2,100 photos, 2,032 of them VITON) uses `max_photos`, shared."""
    import pandas as pd

    from seglib.infra.errors import ConfigError
    from seglib.label.suggest import shared_sample

    items = pd.DataFrame({"image_path": [f"{s}/{i}.jpg" for s, n in (("a", 5), ("b", 40), ("c", 400))
                                         for i in range(n)],
                          "dataset": ["a"] * 5 + ["b"] * 40 + ["c"] * 400})
    picked = shared_sample(items, 60)
    counts = pd.Series([p.split("/")[0] for p in picked]).value_counts().to_dict()
    assert counts == {"a": 5, "b": 27, "c": 28} or counts == {"a": 5, "b": 28, "c": 27}
    assert len(set(picked)) == 60 and shared_sample(items, 60) == picked  # seeded: the same photos again
    assert shared_sample(items, 0) == items["image_path"].tolist()
    assert shared_sample(items.head(3), 10) == items["image_path"].head(3).tolist()
    with pytest.raises(ConfigError, match="max_photos"):
        shared_sample(items, -1)
