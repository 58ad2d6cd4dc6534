"""seglib.transforms.checks: augmented masks stay binary and aligned with their image."""

from __future__ import annotations

import albumentations as A
import numpy as np
from conftest import image_and_box_mask

from seglib.transforms.checks import alignment_verdict, apply_transform, binary_alignment_check, check_image
from seglib.transforms.pipelines import train_transform


def pair(h=40, w=56, seed=0):
    return image_and_box_mask(h, w, seed)


def test_binary_alignment_check_passes_real_pipeline_and_catches_misalignment():
    image, mask = pair(60, 80)
    table = binary_alignment_check(image, mask, train_transform(64, "strong", normalize=False, seed=0), n=12)
    assert list(table.columns) == ["sample", "mask_values", "binary", "fg_fraction", "mask_on_white",
                                    "background_on_black", "aligned"]
    assert len(table) == 12 and table["binary"].all() and table["aligned"].all()
    assert alignment_verdict(table).startswith("All 12")

    def flip_image_only(image, mask):
        return {"image": image[:, ::-1], "mask": mask}

    bad = binary_alignment_check(image, np.pad(mask[:, 20:], ((0, 0), (0, 20))), flip_image_only, n=2)
    assert not bad["aligned"].any()
    assert alignment_verdict(bad).startswith("WARNING")

    def shift_image_4px(image, mask):
        return {"image": np.roll(image, 4, axis=1), "mask": mask}

    assert not binary_alignment_check(image, mask, shift_image_4px, n=1)["aligned"].any()

    def blur_mask(image, mask):
        return {"image": image, "mask": (A.GaussianBlur(blur_limit=(5, 5), p=1.0)(image=mask * 255)["image"])}

    assert not binary_alignment_check(image, mask, blur_mask, n=1)["binary"].any()


def test_check_image_and_apply_transform_give_displayable_arrays():
    image, mask = pair()
    probe = check_image(mask)
    assert probe.shape == (*mask.shape, 3) and set(np.unique(probe)) == {0, 255}
    out_img, out_mask = apply_transform(train_transform(32, "none", seed=0), image, mask)  # normalised tensor
    assert out_img.shape == (32, 32, 3) and out_img.dtype == np.uint8 and out_mask.shape == (32, 32)
