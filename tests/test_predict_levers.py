"""The prediction-time levers (`seglib.predict.levers.InferenceOptions`): scale-aware input never magnifies a photo
beyond its factor, multi-scale inference averages each size mapped back to the photo, the second look predicts a
small figure again at a higher resolution, refined edges come last; all off is the plain prediction bit for bit.
Evaluations with levers are saved apart from the plain ones, and a run's adopted levers are predict's default."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import run_subcommand, save_tiny_checkpoint

from seglib.geometry import network_input, to_photo
from seglib.infra.errors import ConfigError, SeglibError
from seglib.predict import InferenceOptions, Predictor
from seglib.predict.levers import lever_folder, parse_scales
from seglib.predict.outputs import refine_probabilities
from seglib.predict.scales import capped_size
from seglib.predict.second_look import figure_boxes
from seglib.predict.val_choice import adopt_inference
from seglib.profiles import make_config
from seglib.settings import GEOMETRIES, LETTERBOX, RECT


class BlurNetwork:
    """A stand-in network that sees bright pixels as the figure, blurred over a few of its own input pixels (as a
    real network's output is coarse at its input's resolution); it records each call's input shape and TTA flag."""

    device = "cpu"

    def __init__(self, blur: int = 5):
        self.blur, self.calls = blur, []

    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        self.calls.append((batch.shape, tta))
        grey = batch.mean(axis=1)
        return np.stack([1 / (1 + np.exp(-4 * cv2.blur(g, (self.blur, self.blur)))) for g in grey]).astype(np.float32)


def fake_checkpoint(size: int = 448, geometry: str = LETTERBOX) -> dict:
    return {"config": make_config("smoke", {"input_size": size, "geometry": geometry}).to_saved_dict(),
            "threshold": 0.5, "input_size": size}


def figure_photo(height: int, width: int, box: tuple[int, int, int, int], seed: int = 0):
    """A dark noisy photo with one bright ellipse 'figure' inside `box` (top, left, bottom, right), and its mask."""
    rng = np.random.default_rng(seed)
    photo = (rng.random((height, width, 3)) * 50).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left, bottom, right = box
    centre, axes = ((left + right) // 2, (top + bottom) // 2), ((right - left) // 2, (bottom - top) // 2)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    photo[mask > 0] = (220, 180, 150)
    return photo, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_the_cap_never_magnifies_beyond_the_factor_and_rounds_down_to_the_stride():
    assert capped_size(448, 192, 256, 0.0, 32) == 448  # off
    assert capped_size(448, 256, 192, 1.0, 32) == 256
    assert capped_size(448, 256, 192, 1.5, 32) == 384
    assert capped_size(448, 256, 192, 1.2, 32) == 288  # 307 px allowed: one stride down, not up to 320
    assert capped_size(448, 1200, 900, 1.0, 32) == 448  # a large photo keeps the size asked for
    assert capped_size(448, 10, 12, 1.0, 32) == 32  # never below one stride
    for longest in range(40, 500, 7):
        for factor in (0.5, 1.0, 1.3, 2.0):
            size = capped_size(448, longest, longest // 2, factor, 32)
            assert size % 32 == 0 and size <= 448 and (size <= longest * factor or size == 32)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_scale_aware_input_never_magnifies_a_192x256_photo_beyond_the_factor(geometry):
    network = BlurNetwork()
    predictor = Predictor(network, fake_checkpoint(448, geometry), inference=InferenceOptions(max_upscale=1.5))
    photo, _ = figure_photo(256, 192, (60, 50, 200, 140))
    prob = predictor.predict_proba(photo)
    assert prob.shape == (256, 192) and prob.dtype == np.float32
    (shape, _), = network.calls
    assert max(shape[2:]) == 384 and max(shape[2:]) / 256 <= 1.5  # 448 would magnify it 1.75 times
    if geometry == RECT:
        assert shape[2:] == (384, 288)
    plain = Predictor(BlurNetwork(), fake_checkpoint(448, geometry))
    plain.predict_proba(photo)
    assert max(plain.network.calls[0][0][2:]) == 448
    big, _ = figure_photo(600, 450, (100, 100, 500, 350))
    network.calls.clear()
    assert predictor.predict_proba(big).shape == (600, 450) and max(network.calls[0][0][2:]) == 448


def test_multi_scale_averages_each_size_mapped_back_to_the_photo_and_keeps_flip_tta():
    photo, _ = figure_photo(90, 70, (20, 15, 75, 55))
    network = BlurNetwork()
    both = Predictor(network, fake_checkpoint(64), tta=True, inference=InferenceOptions(scales=(32, 64)))
    prob = both.predict_proba(photo)
    assert sorted(shape[2] for shape, _ in network.calls) == [32, 64] and all(tta for _, tta in network.calls)
    each = [Predictor(BlurNetwork(), fake_checkpoint(64), tta=True, inference=InferenceOptions(scales=(s,)))
            .predict_proba(photo) for s in (32, 64)]
    assert prob.shape == (90, 70) and np.allclose(prob, (each[0] + each[1]) / 2, atol=1e-6)
    assert not np.allclose(each[0], each[1])  # the sizes differ, so averaging changes something
    capped = Predictor(BlurNetwork(), fake_checkpoint(64),
                       inference=InferenceOptions(scales=(64, 128), max_upscale=0.5))
    capped.predict_proba(photo)  # both capped to 44 (90 px * 0.5, down to the stride): predicted once
    assert [shape[2] for shape, _ in capped.network.calls] == [44]
    with pytest.raises(ConfigError, match="not a multiple of 4"):
        Predictor(BlurNetwork(), fake_checkpoint(64), inference=InferenceOptions(scales=(30,)))


def test_the_second_look_predicts_a_small_figure_again_at_a_higher_resolution():
    photo, truth = figure_photo(480, 640, (200, 300, 320, 360))  # a 60x120 figure in a 640x480 photo
    first = Predictor(BlurNetwork(), fake_checkpoint(128))
    looked = Predictor(BlurNetwork(), fake_checkpoint(128), inference=InferenceOptions(second_look=True))
    plain, again = first.predict_proba(photo), looked.predict_proba(photo)
    assert again.shape == plain.shape == (480, 640)
    assert [shape for shape, _ in looked.network.calls] == [(1, 3, 128, 128)] * 2  # the photo, then the crop
    assert iou(again >= 0.5, truth > 0) > iou(plain >= 0.5, truth > 0) + 0.05
    (top, left, bottom, right), = figure_boxes(plain)
    outside = np.ones_like(truth, bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(again[outside], plain[outside])  # pasted inside the figure's box only
    # a figure that fills most of the photo gains no resolution from a crop: no second prediction, same output
    big, _ = figure_photo(200, 150, (10, 10, 195, 140))
    looked.network.calls.clear()
    assert np.array_equal(looked.predict_proba(big), first.predict_proba(big)) and len(looked.network.calls) == 1


def test_two_figures_are_each_looked_at_and_an_empty_photo_is_left_alone():
    photo, one = figure_photo(400, 600, (150, 60, 260, 120))
    other = figure_photo(400, 600, (120, 420, 250, 480), seed=1)[1]
    photo[other > 0] = (220, 180, 150)
    looked = Predictor(BlurNetwork(), fake_checkpoint(96), inference=InferenceOptions(second_look=True))
    assert looked.predict_proba(photo).shape == (400, 600) and len(looked.network.calls) == 2
    assert looked.network.calls[1][0][0] == 2  # both crops in one batch
    dark = np.zeros((300, 400, 3), np.uint8)
    looked.network.calls.clear()
    assert looked.predict_proba(dark).shape == (300, 400) and len(looked.network.calls) == 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("levers") / "run" / "best.pt", epoch=3, input_size=32)


def test_all_levers_off_is_the_plain_prediction_bit_for_bit(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, tta=True)
    photo, _ = figure_photo(50, 70, (10, 20, 45, 50))
    expected = to_photo(predictor.network(network_input(photo, 32, LETTERBOX, predictor.multiple)[None], True)[0],
                        50, 70, LETTERBOX)
    assert predictor.inference == InferenceOptions() and "input sizes" not in predictor.describe()
    for options in (InferenceOptions(), InferenceOptions(scales=(32,)), InferenceOptions(max_upscale=5.0)):
        predictor.inference = options
        assert np.array_equal(predictor.predict_proba(photo), expected)


def test_the_levers_compose_with_tta_and_refine_last(checkpoint):
    levers = InferenceOptions(scales=(16, 32), max_upscale=2.0, second_look=True)
    refined = Predictor.from_checkpoint(checkpoint, tta=True, inference=InferenceOptions(
        scales=(16, 32), max_upscale=2.0, second_look=True, refine=True))
    unrefined = Predictor.from_checkpoint(checkpoint, tta=True, inference=levers)
    for height, width in ((40, 30), (33, 71), (120, 90)):
        photo, _ = figure_photo(height, width, (height // 4, width // 4, 3 * height // 4, 3 * width // 4))
        prob = refined.predict_proba(photo)
        assert prob.shape == (height, width) and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
        assert np.array_equal(prob, refine_probabilities(photo, unrefined.predict_proba(photo), refined.threshold))
    assert "input sizes 16+32 averaged" in refined.describe() and "edges refined" in refined.describe()
    assert Predictor.from_checkpoint(checkpoint, refine=True).inference == InferenceOptions(refine=True)


def test_options_are_checked_and_named_apart_from_plain_results(tmp_path):
    assert InferenceOptions(scales=[448, 256]).scales == (256, 448)
    assert InferenceOptions(scales=(256, 448), max_upscale=1.5, second_look=True).tag() == \
        "scales-256-448_upscale-1.5_look"
    assert lever_folder(tmp_path, InferenceOptions()) == tmp_path  # the plain evaluation's folder
    assert lever_folder(tmp_path, InferenceOptions(refine=True)) == tmp_path / "@refine"
    assert lever_folder(tmp_path, InferenceOptions(second_look=True)) == tmp_path / "@look"
    assert parse_scales("256, 448") == (256, 448)
    for bad in ({"scales": (0,)}, {"scales": "256"}, {"max_upscale": -1}, {"max_upscale": float("nan")}):
        with pytest.raises(ConfigError):
            InferenceOptions(**bad)
    with pytest.raises(ConfigError, match="--scales"):
        parse_scales("256,big")


def test_an_evaluation_with_levers_is_saved_apart_and_adopted_levers_are_predicts_default(synthetic_splits,
                                                                                        tmp_path):
    from seglib.evaluate import EvalOptions, evaluate_run

    dataset, splits = synthetic_splits
    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=2, input_size=32)
    kwargs = dict(dataset_dir=dataset, splits_dir=splits)
    levers = EvalOptions(progress=False, n_boot=20, scales=(16, 32), second_look=True)
    test = evaluate_run(tmp_path / "run", "test", options=levers, **kwargs)  # val first, with the same levers
    folder = tmp_path / "run" / "eval" / "@scales-16-32_look"
    assert test.out_dir == folder / "test" and test.val_result is not None
    assert not (tmp_path / "run" / "eval" / "val").exists()  # the plain evaluation's place is untouched
    val = json.loads((folder / "val" / "metrics.json").read_text())
    assert val["inference"] == {"scales": [16, 32], "max_upscale": 0.0, "second_look": True, "refine": False}
    assert test.metrics["threshold_from"].endswith("@scales-16-32_look/val/metrics.json")
    plain = evaluate_run(tmp_path / "run", "val", options=EvalOptions(progress=False, n_boot=20), **kwargs)
    assert plain.out_dir == tmp_path / "run" / "eval" / "val" and "inference" not in plain.metrics
    val["threshold"] = 0.3 if plain.threshold != 0.3 else 0.35  # an untrained model: make val's two choices differ
    (folder / "val" / "metrics.json").write_text(json.dumps(val))
    assert Predictor.from_checkpoint(checkpoint).inference == InferenceOptions()  # nothing adopted yet
    asked = Predictor.from_checkpoint(checkpoint, inference=levers.inference)  # their own val's threshold
    assert asked.threshold == val["threshold"] and "@scales-16-32_look" in asked.threshold_source
    with pytest.raises(SeglibError, match="score val with these levers first"):
        adopt_inference(tmp_path / "run", InferenceOptions(scales=(16,)))
    adopt_inference(tmp_path / "run", levers.inference)
    chosen = Predictor.from_checkpoint(checkpoint)
    assert chosen.inference == levers.inference and chosen.threshold == val["threshold"]
    assert "(as on val)" in chosen.describe() and "@scales-16-32_look" in chosen.threshold_source
    given = Predictor.from_checkpoint(checkpoint, inference=InferenceOptions())
    assert given.inference == InferenceOptions() and given.threshold == plain.threshold  # the plain val's
    adopt_inference(tmp_path / "run", InferenceOptions())  # forgotten again
    assert Predictor.from_checkpoint(checkpoint).inference == InferenceOptions()


def test_the_commands_take_the_levers(synthetic_splits, checkpoint, tmp_path, capsys):
    from seglib.cli.evaluate import add_parser as evaluate_parser
    from seglib.cli.predict import add_parser as predict_parser

    dataset, splits = synthetic_splits
    out = tmp_path / "scored"
    assert run_subcommand(evaluate_parser, ["evaluate", "--checkpoint", str(checkpoint), "--out", str(out),
                                            "--split", "val", "--scales", "16,32", "--max-upscale", "1.5",
                                            "--second-look", "--data-dir", str(dataset), "--splits-dir", str(splits),
                                            "--quiet"]) == 0
    assert (out / "@scales-16-32_upscale-1.5_look" / "val" / "metrics.json").is_file()
    assert "a second look at each figure" in capsys.readouterr().out
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), figure_photo(60, 40, (10, 10, 50, 30))[0])
    assert run_subcommand(predict_parser, ["predict", str(photos), "--checkpoint", str(checkpoint), "--out",
                                           str(tmp_path / "masks"), "--scales", "16,32", "--second-look",
                                           "--runtime", "torch", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "input sizes 16+32 averaged" in said and "(given)" in said and (tmp_path / "masks" / "a.mask.png").is_file()


def test_an_export_carries_the_adopted_levers_and_a_fixed_size_one_refuses_other_sizes(tmp_path):
    pytest.importorskip("onnxruntime")
    from seglib.export import export_onnx

    checkpoint = save_tiny_checkpoint(tmp_path / "run" / "best.pt", epoch=4, input_size=32)
    levers = InferenceOptions(scales=(16, 32), second_look=True)
    folder = lever_folder(tmp_path / "run" / "eval", levers) / "val"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"threshold": 0.3, "tta": True, "checkpoint": "runs/x/best.pt",
                                                     "checkpoint_epoch": 4, "inference": levers.record()}))
    adopt_inference(tmp_path / "run", levers)
    exported = Predictor.from_onnx(export_onnx(checkpoint, tmp_path / "model.onnx").path)
    assert (exported.threshold, exported.tta, exported.inference) == (0.3, True, levers)
    fixed = export_onnx(checkpoint, tmp_path / "fixed.onnx", dynamic=False).path
    with pytest.raises(SeglibError, match="fixed 32x32 input"):
        Predictor.from_onnx(fixed)  # the adopted sizes, recorded in the export, cannot run on a fixed graph
    assert Predictor.from_onnx(fixed, inference=InferenceOptions(second_look=True)).inference.second_look
