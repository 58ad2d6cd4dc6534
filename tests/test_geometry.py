"""seglib.geometry: the photo -> network input step in NumPy and OpenCV gives exactly what the Albumentations
pipeline gives (prediction uses the first, training and evaluation's data sets the second)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglib.geometry import input_shape, network_input
from seglib.infra.errors import ConfigError
from seglib.transforms.pipelines import eval_transform

GEOMETRIES = ("letterbox", "resize", "rect")


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 700), width=st.integers(1, 700), size=st.sampled_from([32, 64, 256, 320, 448]),
       geometry=st.sampled_from(GEOMETRIES), multiple=st.sampled_from([16, 32]), seed=st.integers(0, 2**16))
def test_network_input_equals_the_albumentations_pipeline_bit_for_bit(height, width, size, geometry, multiple, seed):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = eval_transform(size, geometry=geometry, multiple=multiple)(image=image)["image"].numpy()
    got = network_input(image, size, geometry, multiple)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert got.shape[1:] == input_shape(height, width, size, geometry, multiple)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_a_photo_already_at_the_input_size_is_only_normalised(geometry):
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = network_input(image, 64, geometry)
    assert np.array_equal(got, eval_transform(64, geometry=geometry)(image=image)["image"].numpy())


def test_an_unknown_geometry_is_refused_by_name():
    with pytest.raises(ConfigError, match="geometry 'crop' unknown"):
        network_input(np.zeros((8, 8, 3), np.uint8), 32, "crop")
