"""seglib.models.tflite_net: MediaPipe's selfie segmenter run in PyTorch must match MediaPipe, train, and round-trip."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import rebuilt_without_the_tflite_file

from seglib.checkpoint import load_checkpoint
from seglib.geometry import NORMALIZATION
from seglib.infra.errors import ConfigError
from seglib.models.model import MEDIAPIPE_SELFIE_TFLITE, build_model
from seglib.models.tflite_net import TFLiteNet, _same_padding, _same_padding_divisible, read_tflite
from seglib.profiles import make_config

FIXTURES = Path(__file__).with_name("fixtures")


def normalized(rgb_uint8: np.ndarray) -> torch.Tensor:
    x = (rgb_uint8.astype(np.float32) / 255 - np.array(NORMALIZATION["mean"])) / np.array(NORMALIZATION["std"])
    return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))


@pytest.fixture(scope="module")
def selfie():
    return read_tflite(MEDIAPIPE_SELFIE_TFLITE)


def test_bundled_model_is_read_completely(selfie):
    spec, weights = selfie
    net = TFLiteNet(spec, weights)
    assert sum(p.numel() for p in net.parameters()) == 106_401  # every fp16 weight of the file, dequantised
    assert spec["sha256"] == "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
    assert net.total_stride == 16
    assert spec["ops"][-1]["type"] == "LOGISTIC" and net.output_index != spec["output"]  # returns logits


def test_matches_mediapipe_on_a_photo(selfie):
    """Fixture: a data set photo at 256x256 and MediaPipe 0.10.21's own probabilities for it (uint8)."""
    rgb = cv2.cvtColor(cv2.imread(str(FIXTURES / "mediapipe_input_256.png")), cv2.COLOR_BGR2RGB)
    expected = cv2.imread(str(FIXTURES / "mediapipe_selfie_prob_256.png"), cv2.IMREAD_UNCHANGED) / 255.0
    net = TFLiteNet(*selfie).eval()
    with torch.no_grad():
        prob = torch.sigmoid(net(normalized(rgb)))[0, 0].numpy()
    assert np.abs(prob - expected).max() < 0.003  # the fixture's rounding is 0.002
    assert ((prob > 0.5) == (expected > 0.5)).mean() > 0.999
    assert 0.3 < (prob > 0.5).mean() < 0.8  # a person, not an empty or full mask


def test_other_input_sizes_and_random_initialisation(selfie):
    spec, weights = selfie
    pretrained, scratch = TFLiteNet(spec, weights), build_model("mediapipe-selfie", encoder_weights="none")
    x = torch.randn(2, 3, 128, 96)
    assert pretrained(x).shape == (2, 1, 128, 96)
    first = "0"
    assert not torch.equal(pretrained.layers[first].weight, scratch.layers[first].weight)
    with pytest.raises(ValueError, match="3 input channels"):
        pretrained(torch.randn(1, 1, 64, 64))


def test_gradients_reach_every_layer(selfie):
    net = TFLiteNet(*selfie)
    net(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_same_padding_puts_the_extra_pixel_after():
    assert _same_padding(256, 3, 2, 1) == (0, 1)
    assert _same_padding(255, 3, 2, 1) == (1, 1)
    assert _same_padding(16, 5, 1, 1) == (2, 2)


def test_same_padding_of_divisible_sizes_needs_no_size():
    """What lets the ONNX export take any size: for sizes divisible by the stride, SAME padding is a constant."""
    for kernel, stride, dilation in [(3, 2, 1), (5, 2, 1), (1, 2, 1), (3, 1, 1), (5, 1, 2), (2, 2, 1)]:
        for size in range(stride, 40 * stride, stride):
            assert _same_padding_divisible(kernel, stride, dilation) == _same_padding(size, kernel, stride, dilation)
    assert _same_padding_divisible(3, 2, 1) == (0, 1) and _same_padding_divisible(5, 1, 1) == (2, 2)


def test_checkpoint_rebuilds_without_the_tflite_file(tmp_path, monkeypatch, selfie):
    cfg = make_config("smoke", {"model": "mediapipe-selfie", "encoder_weights": "mediapipe", "input_size": 64})
    net = TFLiteNet(*selfie).eval()
    state, rebuilt = rebuilt_without_the_tflite_file(net, cfg, tmp_path, monkeypatch)
    assert "MediaPipe" in state["weights"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net(x))


def test_bad_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ConfigError, match="broken.tflite: not a readable TensorFlow Lite model"):
        read_tflite(bad)
    with pytest.raises(ConfigError, match="missing.tflite: TensorFlow Lite model file not found"):
        build_model("mediapipe-selfie", encoder_weights=str(tmp_path / "missing.tflite"))
    with pytest.raises(ConfigError, match="encoder_weights=mediapipe, none or a .tflite file"):
        build_model("mediapipe-selfie", encoder_weights="imagenet")
    with pytest.raises(ConfigError, match="multiple of 16"):
        make_config("smoke", {"model": "mediapipe-selfie", "input_size": 72})


def test_unsupported_operator_is_named(monkeypatch):
    """An operator outside the supported set is refused with the file and the operator's name."""
    from seglib.models import tflite_net

    monkeypatch.setattr(tflite_net, "SUPPORTED", tuple(op for op in tflite_net.SUPPORTED if op != "HARD_SWISH"))
    with pytest.raises(ConfigError, match=r"selfie_segmentation.tflite: operator HARD_SWISH \(number \d+\) is not supported"):
        read_tflite(MEDIAPIPE_SELFIE_TFLITE)


def test_resize_by_a_non_integer_factor_is_refused(selfie):
    import copy

    spec, weights = selfie
    spec = copy.deepcopy(spec)
    resize = next(op for op in spec["ops"] if op["type"] == "RESIZE_BILINEAR")
    spec["shapes"][str(resize["outputs"][0])][1] = 24  # 16 -> 24: a factor of 1.5
    with pytest.raises(ConfigError, match="RESIZE_BILINEAR from 16x16 to 24x32 is not supported"):
        TFLiteNet(spec, weights)


def test_fine_tuning_run_resumes_and_predicts(synthetic_splits, tmp_path):
    """model=mediapipe-selfie through the whole engine: train, interrupt, resume, then predict from best.pt."""
    from seglib.predict import Predictor
    from seglib.training.engine import stop_after, train

    folder, splits = synthetic_splits
    cfg = make_config("smoke", {"model": "mediapipe-selfie", "encoder_weights": "mediapipe", "input_size": 32,
                                "cache_max_side": 64, "batch_size": 3, "limit_train": 0, "limit_val": 0,
                                "epochs": 2, "threads": 1, "lr": 1e-3})
    run = tmp_path / "run"
    part = train(cfg, run, dataset_dir=folder, splits_dir=splits, progress=False, on_epoch_end=stop_after(1))
    assert part.stop_reason == "interrupted"
    result = train(None, run, resume=True, dataset_dir=folder, splits_dir=splits, progress=False)
    assert result.epochs_run == 2 and result.stop_reason == "completed"
    state = load_checkpoint(run / "best.pt")
    assert state["model_spec"]["sha256"].startswith("9ee168ec") and "fine-tuned" in state["weights"]
    predictor = Predictor.from_checkpoint(run / "best.pt")
    image = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
    prob = predictor.predict_proba(image)
    assert prob.shape == (48, 40) and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
