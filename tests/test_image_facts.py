"""seglib.image_facts: people, brightness and grayscale measured once per image at mask resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seglib.image_facts import FACT_COLUMNS, count_people, image_facts


def box_mask(h=60, w=80, boxes=((10, 20, 50, 60),)):
    mask = np.zeros((h, w), np.uint8)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


def test_count_people_counts_blobs_and_ignores_specks():
    assert count_people(box_mask(boxes=((10, 5, 50, 30), (10, 45, 50, 75)))) == 2
    assert count_people(box_mask(boxes=((10, 20, 50, 60), (0, 0, 2, 2)))) == 1
    assert count_people(np.zeros((5, 5), np.uint8)) == 0


def test_facts_of_a_dark_figure_on_a_bright_background():
    image = np.full((60, 80, 3), 200, np.uint8)
    mask = box_mask()
    image[mask > 0] = 50
    facts = image_facts(image, mask)
    assert list(facts) == FACT_COLUMNS
    assert facts["figure_brightness"] == pytest.approx(50 / 255, abs=1e-3)
    assert facts["background_brightness"] == pytest.approx(200 / 255, abs=1e-3)
    assert facts["is_grayscale"] and facts["n_people"] == 1
    image[..., 0] = 10
    assert not image_facts(image, mask)["is_grayscale"]
    empty = image_facts(image, np.zeros((60, 80), np.uint8))
    assert math.isnan(empty["figure_brightness"]) and empty["n_people"] == 0
    with pytest.raises(ValueError, match="differ in size"):
        image_facts(image, np.zeros((10, 10), np.uint8))
