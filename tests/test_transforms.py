"""seglib.transforms.pipelines: masks stay binary and aligned with the drawn shape; the letterbox inverts."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from seglib.geometry import input_shape, letterbox_box, pad_value, to_photo, unletterbox
from seglib.infra.errors import ConfigError
from seglib.transforms.pipelines import eval_transform, geometric_ops, photometric_ops, train_transform


def shape_pair(h=90, w=120):
    """A black image with a white rectangle, and the rectangle's mask."""
    image = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(image, (30, 20), (80, 70), (255, 255, 255), -1)
    mask[20:71, 30:81] = 1
    return image, mask


@pytest.mark.parametrize("strength", ["light", "standard", "strong"])
def test_geometric_transforms_keep_mask_on_shape(strength):
    image, mask = shape_pair()
    pipeline = A.Compose(geometric_ops(strength), seed=0)
    for _ in range(20):
        out = pipeline(image=image, mask=mask)
        m, img = out["mask"], out["image"]
        assert set(np.unique(m)) <= {0, 1}
        bright = img.max(axis=2) > 127
        if m.sum() > 50:  # interior of the mask lies on the bright shape (edges may blur)
            inner = cv2.erode(m, np.ones((3, 3), np.uint8))
            assert bright[inner > 0].mean() > 0.98
            assert m[bright].mean() > 0.9


def test_train_pipeline_output_and_seed():
    image, mask = shape_pair()
    a = train_transform(64, "standard", seed=1)(image=image, mask=mask)
    b = train_transform(64, "standard", seed=1)(image=image, mask=mask)
    assert a["image"].shape == (3, 64, 64) and a["mask"].shape == (64, 64)
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert set(np.unique(a["mask"].numpy())) <= {0, 1}


def test_photometric_ops_leave_mask_alone():
    image, mask = shape_pair()
    out = A.Compose(photometric_ops("strong"), seed=0)(image=image, mask=mask)
    assert np.array_equal(out["mask"], mask)


@pytest.mark.parametrize(("h", "w"), [(577, 433), (408, 612), (183, 275), (31, 97)])
def test_letterbox_box_matches_pipeline_and_inverts(h, w):
    mask = np.ones((h, w), np.uint8)
    out = eval_transform(64, normalize=False)(image=np.zeros((h, w, 3), np.uint8), mask=mask)["mask"]
    top, left, nh, nw = letterbox_box(h, w, 64)
    ys, xs = np.nonzero(out)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (top, top + nh, left, left + nw)
    back = unletterbox(out.astype(np.float32), h, w)
    assert back.shape == (h, w) and back.min() > 0.99


def test_resize_geometry_stretches_to_the_square_and_back():
    image = np.zeros((60, 30, 3), np.uint8)
    mask = np.zeros((60, 30), np.uint8)
    mask[:, :15] = 1  # left half
    out = eval_transform(32, normalize=False, geometry="resize")(image=image, mask=mask)
    assert out["image"].shape == (32, 32, 3)
    assert out["mask"][:, :16].all() and not out["mask"][:, 16:].any()  # stretched, no padding
    back = to_photo(out["mask"].astype(np.float32), 60, 30, "resize")
    assert back.shape == (60, 30)
    assert (back[:, :14] > 0.5).all() and (back[:, 16:] < 0.5).all()


@pytest.mark.parametrize(("h", "w"), [(577, 433), (408, 612), (183, 275), (31, 97), (64, 64), (480, 270)])
def test_rect_geometry_keeps_the_aspect_pads_to_the_stride_and_inverts(h, w):
    mask = np.ones((h, w), np.uint8)
    out = eval_transform(64, normalize=False, geometry="rect", multiple=16)(image=np.zeros((h, w, 3), np.uint8),
                                                                             mask=mask)
    shape = input_shape(h, w, 64, "rect", 16)
    assert out["mask"].shape == out["image"].shape[:2] == shape
    assert max(shape) == 64 and shape[0] % 16 == 0 and shape[1] % 16 == 0
    top, left, nh, nw = letterbox_box(h, w, 64, shape)
    ys, xs = np.nonzero(out["mask"])
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (top, top + nh, left, left + nw)
    assert out["mask"].size - out["mask"].sum() < 16 * 64  # less than one stride of padding, not a square's
    back = to_photo(out["mask"].astype(np.float32), h, w, "rect")
    assert back.shape == (h, w) and back.min() > 0.99


def test_square_geometries_have_one_input_shape():
    assert input_shape(480, 270, 64, "letterbox") == input_shape(480, 270, 64, "resize") == (64, 64)


def test_pad_value_is_black_after_normalize():
    black = eval_transform(32)(image=np.zeros((40, 32, 3), np.uint8))["image"]  # letterbox padding and photo
    assert np.allclose(black[:, 20, 16].numpy(), pad_value(), atol=1e-5)


def test_unknown_geometry_is_refused():
    with pytest.raises(ConfigError, match="geometry 'crop' unknown"):
        eval_transform(32, geometry="crop")
