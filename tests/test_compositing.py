"""seglib.transforms.compositing: the figure pasted onto another background moves with its mask, keeps its pixels, stays
against the edges that cut it; backgrounds from photos lose their people; reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from seglib.transforms.compositing import (
    BACKGROUND_KINDS,
    BackgroundPool,
    PasteOnBackground,
    people_removed,
    synthetic_background,
)

GREEN, RED = (0, 200, 0), (220, 20, 20)


def scene(h=120, w=160, box=(30, 90, 60, 100)):
    """A green scene with a red figure in `box` (top, bottom, left, right), and its 0/1 mask."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = GREEN
    mask = np.zeros((h, w), np.uint8)
    top, bottom, left, right = box
    image[top:bottom, left:right] = RED
    mask[top:bottom, left:right] = 1
    return image, mask


def plain(colour):
    def pool(_rng, shape):
        return np.broadcast_to(np.asarray(colour, np.uint8), (*shape, 3)).copy()
    return pool


def paste(image, mask, seed=0, pool=None, scale=(0.6, 1.0)):
    transform = PasteOnBackground(pool or plain((0, 0, 255)), scale=scale, p=1.0)
    transform.set_random_seed(seed)
    return transform(image=image, mask=mask)


@pytest.mark.parametrize("seed", range(6))
def test_the_pasted_figure_keeps_its_pixels_and_its_mask_moves_with_it(seed):
    image, mask = scene()
    out = paste(image, mask, seed)
    new_image, new_mask = out["image"], out["mask"]
    assert new_image.shape == image.shape and new_mask.shape == mask.shape and new_mask.dtype == mask.dtype
    assert set(np.unique(new_mask)) == {0, 1}
    area = new_mask.sum() / mask.sum()
    assert 0.6**2 * 0.9 <= area <= 1.05  # scaled by a factor from `scale`, in both directions
    inner = new_mask.astype(bool) & np.roll(new_mask, 2, 0).astype(bool) & np.roll(new_mask, -2, 0).astype(bool) \
        & np.roll(new_mask, 2, 1).astype(bool) & np.roll(new_mask, -2, 1).astype(bool)
    assert (np.abs(new_image[inner].astype(int) - RED) <= 2).all()  # the figure, away from its softened edge
    outside = ~new_mask.astype(bool) & ~np.roll(new_mask, 2, 0).astype(bool) & ~np.roll(new_mask, -2, 0).astype(bool) \
        & ~np.roll(new_mask, 2, 1).astype(bool) & ~np.roll(new_mask, -2, 1).astype(bool)
    assert (new_image[outside] == (0, 0, 255)).all()  # the new background, and nothing of the old scene


def test_a_figure_cut_by_the_frame_stays_against_that_edge():
    image, mask = scene(box=(50, 120, 40, 90))  # cut by the bottom edge: a portrait cut at the chest
    for seed in range(8):
        new_mask = paste(image, mask, seed)["mask"]
        rows = np.nonzero(new_mask.any(axis=1))[0]
        assert rows.max() == mask.shape[0] - 1


def test_a_figure_cut_by_two_opposite_edges_keeps_its_size():
    image, mask = scene(box=(0, 120, 50, 110))
    for seed in range(4):
        assert paste(image, mask, seed)["mask"].sum() == mask.sum()


def test_a_photo_without_a_figure_is_left_as_it_is():
    image, mask = scene()
    mask[:] = 0
    out = paste(image, mask)
    assert np.array_equal(out["image"], image) and np.array_equal(out["mask"], mask)


def test_the_same_seed_gives_the_same_composite_and_another_seed_another():
    image, mask = scene()
    pool = BackgroundPool()
    first, again, other = (paste(image, mask, seed, pool) for seed in (5, 5, 6))
    assert np.array_equal(first["image"], again["image"]) and np.array_equal(first["mask"], again["mask"])
    assert not np.array_equal(first["image"], other["image"])


def test_a_background_photo_loses_its_people():
    image, mask = scene()
    out = people_removed(image, mask, (60, 80))
    assert out.shape == (60, 80, 3)
    reddish = (out[..., 0].astype(int) - out[..., 1]) > 60
    assert not reddish.any()  # the red figure is filled in from the green around it
    assert (out[:5, :5] == GREEN).all()  # far from the figure the scene is untouched


def test_the_pool_draws_photos_and_synthetic_backgrounds_of_the_asked_size():
    image, mask = scene()
    drawn = []
    pool = BackgroundPool(lambda i: (drawn.append(i) or image, mask), count=3)
    rng = np.random.default_rng(0)
    backgrounds = [pool(rng, (50, 70)) for _ in range(40)]
    assert all(b.shape == (50, 70, 3) and b.dtype == np.uint8 for b in backgrounds)
    assert drawn and set(drawn) <= {0, 1, 2}
    for kind in BACKGROUND_KINDS[1:]:
        assert synthetic_background(kind, rng, (9, 11)).shape == (9, 11, 3)


def test_training_with_composite_pastes_onto_the_training_photos_only(synthetic_splits):
    import torch

    from seglib.profiles import make_config
    from seglib.training.loaders import make_loaders
    from seglib.training.runtime import Runtime

    folder, splits = synthetic_splits
    cfg = make_config("smoke", {"composite": 0.5, "input_size": 32, "batch_size": 3})
    train_loader, val_loader = make_loaders(cfg, Runtime(torch.device("cpu")), folder, splits)
    transforms = train_loader.dataset.transform.transforms
    assert isinstance(transforms[0], PasteOnBackground) and transforms[0].p == 0.5
    assert transforms[0].backgrounds.count == len(train_loader.dataset)
    assert not any(isinstance(t, PasteOnBackground) for t in val_loader.dataset.transform.transforms)
    batch = next(iter(train_loader))
    assert batch["image"].shape[-2:] == (32, 32) and set(batch["mask"].unique().tolist()) <= {0.0, 1.0}


def test_composite_is_a_probability_and_older_configs_had_none():
    from seglib.infra.errors import ConfigError
    from seglib.profiles import make_config
    from seglib.settings import config_from_dict

    with pytest.raises(ConfigError, match="composite=1.5: a probability"):
        make_config("smoke", {"composite": 1.5})
    saved = make_config("smoke").to_saved_dict()
    saved.pop("composite")
    saved["config_schema"] = 2
    assert config_from_dict(saved).composite == 0.0
