"""seglib.data.mask_rules: each rule reads a set's stored mask values as person (1) and background (0); a rule
that does not fit the file, or a rule that cannot be parsed, is a one-line DataError."""

import numpy as np
import pytest
from PIL import Image

from seglib.data.mask_rules import (
    ALPHA_THRESHOLD,
    PINHOLE_MAX_PX,
    MaskRule,
    alpha_channel,
    pinholes,
    without_pinholes,
)
from seglib.infra.errors import DataError

PERSON = np.array([[0, 1], [1, 0]], dtype=np.uint8)


def _save(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return path


@pytest.mark.parametrize(("rule", "stored"), [
    ("binary", PERSON * 255),
    ("binary", PERSON),
    ("nonzero", [[0, 3], [7, 0]]),
    ("==2", [[0, 2], [2, 5]]),
    ("in:4,9", [[1, 4], [9, 0]]),
])
def test_each_value_rule_reads_the_person(tmp_path, rule, stored):
    assert np.array_equal(MaskRule.parse(rule).read(_save(tmp_path / "m.png", stored)), PERSON)


def test_the_colour_and_alpha_rules_read_the_person(tmp_path):
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[PERSON == 1] = (200, 10, 30)
    assert np.array_equal(MaskRule.parse("rgb:200,10,30").read(_save(tmp_path / "c.png", rgb)), PERSON)
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    rgba[..., 3] = np.where(PERSON == 1, ALPHA_THRESHOLD + 1, ALPHA_THRESHOLD)
    cut_out = _save(tmp_path / "a.png", rgba, "RGBA")
    assert np.array_equal(MaskRule.parse("alpha").read(cut_out), PERSON)
    assert alpha_channel(cut_out) is not None and alpha_channel(tmp_path / "c.png") is None


@pytest.mark.parametrize(("rule", "stored", "says"), [
    ("binary", [[0, 3], [7, 0]], "mask is not binary"),
    ("alpha", PERSON * 255, "has no alpha channel"),
])
def test_a_rule_that_does_not_fit_the_file_is_one_line_naming_it(tmp_path, rule, stored, says):
    path = _save(tmp_path / "m.png", stored)
    with pytest.raises(DataError, match=says) as info:
        MaskRule.parse(rule).read(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_cut_out_is_refused_by_every_rule_but_alpha(tmp_path):
    rgba = np.full((2, 2, 4), 255, dtype=np.uint8)
    rgba[0, 0, 3] = 0
    with pytest.raises(DataError, match="--mask-rule alpha"):
        MaskRule.parse("nonzero").read(_save(tmp_path / "a.png", rgba, "RGBA"))


@pytest.mark.parametrize("text", ["", "Binary", "==1,2", "rgb:1,2", "in:", "in:a", "==-1"])
def test_an_unknown_rule_lists_the_rules(text):
    with pytest.raises(DataError, match=r"expected binary \(0/255 or 0/1\), nonzero"):
        MaskRule.parse(text)


def test_pinholes_are_small_specks_inside_the_figure_or_alone_outside_it():
    person = np.zeros((40, 40), bool)
    person[0:35, 5:25] = True  # the figure, touching the top of the frame
    person[10, 10] = False  # a 1-px pinhole
    person[20:24, 12:16] = False  # a 16-px hole: still a pinhole
    person[26:31, 8:13] = False  # a 25-px hole: a real gap, kept
    person[2, 30] = True  # a speck of figure in the background
    person[30:35, 30:35] = True  # a 25-px blob: kept
    person[0, 15] = False  # a 1-px notch open to the frame: background, never a hole
    holes, specks, clean = pinholes(person)
    assert (holes, specks) == (2, 1) and PINHOLE_MAX_PX == 16
    assert clean[10, 10] and clean[20:24, 12:16].all() and not clean[26:31, 8:13].any()
    assert not clean[2, 30] and clean[30:35, 30:35].all() and not clean[0, 15]
    assert (clean != person).sum() == 1 + 16 + 1
    assert pinholes(clean)[:2] == (0, 0)
    as_uint8 = without_pinholes(person.astype(np.uint8))
    assert as_uint8.dtype == np.uint8 and (as_uint8 == clean).all()
