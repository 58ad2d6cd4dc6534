"""seglib.infra.arrays: photos and masks in the workbook's forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seglib.infra.arrays import as_mask, check_shapes, to_rgb


def test_to_rgb_accepts_gray_rgba_float_and_chw():
    gray = np.full((4, 5), 200, np.uint8)
    assert to_rgb(gray).shape == (4, 5, 3) and (to_rgb(gray) == 200).all()
    rgba = np.zeros((4, 5, 4), np.uint8)
    assert to_rgb(rgba).shape == (4, 5, 3)
    assert to_rgb(np.full((4, 5, 3), 1.0, np.float32)).max() == 255
    assert to_rgb(torch.zeros(3, 4, 5)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="expected an HxW or HxWx3 image"):
        to_rgb(np.zeros((2, 3, 4, 5)))


def test_as_mask_reads_bool_01_0255_and_probabilities():
    m = np.array([[0, 1], [1, 0]], np.uint8)
    assert (as_mask(m) == m.astype(bool)).all() and (as_mask(m * 255) == m.astype(bool)).all()
    assert (as_mask(np.array([[0.2, 0.7]], np.float32)) == [[False, True]]).all()
    with pytest.raises(ValueError, match="does not match"):
        check_shapes(np.zeros((4, 5, 3)), np.zeros((4, 4)))
