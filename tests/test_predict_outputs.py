"""What a predicted figure is used for: soft alpha mattes, RGBA cut-outs, backgrounds replaced (blur, colour,
image), the guided-filter edge, from Python and from `seglib predict`; bad backgrounds get one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import run_subcommand, save_tiny_checkpoint
from PIL import Image

from seglib.cli.predict import add_parser
from seglib.infra.errors import DataError, SeglibError
from seglib.predict import Predictor, composite, cutout_rgba, figure_alpha, parse_background
from seglib.predict.outputs import guided_filter, soft_alpha


def figure_and_probabilities(h: int = 60, w: int = 40):
    """A bright figure (a centred rectangle) on a dark textured background, and confident probabilities."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    rgb[15:45, 10:30] = 220
    prob = np.full((h, w), 0.02, np.float32)
    prob[15:45, 10:30] = 0.97
    return rgb, prob


def test_the_alpha_is_0_on_the_background_255_inside_and_soft_only_near_the_threshold():
    rgb, prob = figure_and_probabilities()
    for refine in (False, True):
        alpha = figure_alpha(rgb, prob, 0.5, refine=refine)
        assert alpha.dtype == np.uint8 and alpha.shape == prob.shape
        assert (alpha[20:40, 14:26] == 255).all() and (alpha[:8] == 0).all() and (alpha[:, :4] == 0).all()
    ramp = soft_alpha(np.array([0.3, 0.4, 0.5, 0.6, 0.7]), 0.5, softness=0.1)
    assert ramp.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_the_guided_filter_moves_a_blurred_edge_onto_the_photos_own_edge():
    rng = np.random.default_rng(0)
    rgb = (rng.random((120, 80, 3)) * 20).astype(np.uint8)
    rgb[30:90, 20:60] = 220
    truth = np.zeros((120, 80), bool)
    truth[30:90, 20:60] = True
    coarse = Image.fromarray(truth.astype(np.uint8) * 255).resize((15, 10), Image.BILINEAR)  # 8x coarser,
    blurry = np.asarray(coarse.resize((80, 120), Image.BILINEAR)) / 255.0  # as a network's output is
    fitted = guided_filter(rgb, blurry, 8, 1e-3)
    assert ((blurry >= 0.5) != truth).mean() > 0.005
    assert ((fitted >= 0.5) != truth).mean() < 0.002


def test_a_cutout_is_rgba_at_the_photos_size_with_its_colours():
    rgb, prob = figure_and_probabilities()
    rgba = cutout_rgba(rgb, figure_alpha(rgb, prob, 0.5))
    assert rgba.shape == (60, 40, 4) and (rgba[..., :3] == rgb).all()


@pytest.mark.parametrize("spec", ["white", "#102030", "10,20,30", "blur"])
def test_a_new_background_keeps_the_figure_and_changes_only_the_background(spec):
    rgb, prob = figure_and_probabilities()
    out = composite(rgb, figure_alpha(rgb, prob, 0.5), parse_background(spec))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[20:40, 14:26] == rgb[20:40, 14:26]).all()
    assert not (out[:8] == rgb[:8]).all()
    if spec == "white":
        assert (out[:8] == 255).all()
    if spec == "blur":  # the figure's colour does not bleed into the blurred background around it
        assert out[:8].mean() < 80


def test_an_image_background_is_scaled_to_cover_the_photo(tmp_path):
    bg = np.zeros((10, 30, 3), np.uint8)
    bg[:, :, 2] = 200
    Image.fromarray(bg).save(tmp_path / "sea.png")
    rgb, prob = figure_and_probabilities()
    out = composite(rgb, figure_alpha(rgb, prob, 0.5), parse_background(str(tmp_path / "sea.png")))
    assert (out[:8, :, 2] == 200).all() and (out[:8, :, :2] == 0).all()


def test_bad_backgrounds_say_what_is_wrong_and_name_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: "):
        parse_background(str(tmp_path / "broken.jpg"))
    with pytest.raises(DataError, match=r"nowhere\.png: background image not found"):
        parse_background(str(tmp_path / "nowhere.png"))
    with pytest.raises(SeglibError, match="each of R,G,B must be 0-255"):
        parse_background("10,20,300")
    with pytest.raises(SeglibError, match="#RRGGBB"):
        parse_background("#12345g")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=64)


def test_predictor_cutout_and_background_are_at_the_photos_size(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    rgb, _ = figure_and_probabilities(37, 23)
    assert predictor.cutout(rgb).shape == (37, 23, 4)
    assert predictor.replace_background(rgb, "black", refine=True).shape == (37, 23, 3)
    alpha = predictor.alpha(rgb)
    assert ((alpha >= 128) == predictor.predict_mask(rgb).astype(bool)).mean() > 0.99


def test_predict_writes_cutouts_and_backgrounds_beside_the_masks(tmp_path, checkpoint, capsys):
    from seglib.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rgb, _ = figure_and_probabilities(31, 45)
    Image.fromarray(rgb).save(photos / "a.jpg")
    out = tmp_path / "out"
    assert run_subcommand(add_parser, ["predict", str(photos), "--checkpoint", str(checkpoint), "--out", str(out),
                                       "--cutout", "--background", "blur", "--refine", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.background.jpg", "a.cutout.png", "a.mask.png", "quality.csv"]
    with Image.open(out / "a.cutout.png") as cut:
        assert cut.mode == "RGBA" and cut.size == (45, 31)
    with Image.open(out / "a.background.jpg") as bg:
        assert bg.mode == "RGB" and bg.size == (45, 31)
    assert "wrote 1 mask, 1 cut-out and 1 composite" in capsys.readouterr().out
    # a second run over the same folder leaves the outputs out of its inputs, and refuses to overwrite them
    assert main(["predict", str(photos), str(out), "--checkpoint", str(checkpoint), "--out", str(out), "--cutout",
                 "--no-progress"]) == 2
    assert "a.mask.png already exists" in capsys.readouterr().err


def test_an_unreadable_background_image_stops_predict_before_anything_is_written(tmp_path, checkpoint, capsys):
    from seglib.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(figure_and_probabilities()[0]).save(photos / "a.jpg")
    (tmp_path / "bg.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    code = main(["predict", str(photos), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--background", str(tmp_path / "bg.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bg.png" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_refined_probabilities_follow_the_photos_edge_and_change_nothing_far_from_it():
    from seglib.metrics import iou
    from seglib.predict.outputs import refine_probabilities

    rgb = np.zeros((160, 200, 3), np.uint8)
    rgb[40:120, 60:140] = (230, 200, 180)  # the figure: a bright square on black
    truth = rgb[..., 0] > 0
    coarse = cv2.resize(cv2.resize(truth.astype(np.float32), (25, 20), interpolation=cv2.INTER_AREA), (200, 160),
                        interpolation=cv2.INTER_LINEAR)  # a low-resolution prediction, scaled up: blurred edges
    coarse = np.roll(coarse, 2, axis=1)  # and a little off
    refined = refine_probabilities(rgb, coarse, 0.5)
    assert refined.dtype == np.float32 and refined.shape == coarse.shape
    assert iou(refined >= 0.5, truth) > iou(coarse >= 0.5, truth)
    inside_far = cv2.erode((coarse >= 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    outside_far = cv2.dilate((coarse >= 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(refined[inside_far], coarse[inside_far])
    assert np.array_equal(refined[outside_far], coarse[outside_far])
