"""seglib.models.mediapipe_unet: the canonical U-Net on MediaPipe's encoder (taps, concatenated skips, checkpoints)."""

from __future__ import annotations

import pytest
import torch
from conftest import rebuilt_without_the_tflite_file

from seglib.infra.errors import ConfigError
from seglib.models.mediapipe_unet import MEDIAPIPE_TAPS, TFLiteEncoder, encoder_spec
from seglib.models.model import MEDIAPIPE_SELFIE_TFLITE, build_model
from seglib.models.tflite_net import TFLiteNet, read_tflite
from seglib.profiles import make_config


@pytest.fixture(scope="module")
def selfie():
    return read_tflite(MEDIAPIPE_SELFIE_TFLITE)


def test_encoder_taps_the_four_strides_and_drops_the_decoder(selfie):
    spec, weights = selfie
    cut = encoder_spec(spec)
    assert len(cut["ops"]) < len(spec["ops"])
    assert not any(op["type"] == "Convolution2DTransposeBias" for op in cut["ops"])  # MediaPipe's head is gone
    encoder = TFLiteEncoder(cut, weights).eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, 96, 128))
    assert [tuple(f.shape) for f in features] == [(2, c, 96 // s, 128 // s) for _, s, c in MEDIAPIPE_TAPS]


def test_encoder_features_are_the_pretrained_networks_own(selfie):
    """The tapped tensors equal those of the whole MediaPipe network run on the same input."""
    spec, weights = selfie
    full, encoder = TFLiteNet(spec, weights).eval(), TFLiteEncoder(encoder_spec(spec), weights).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        values, tapped = full.tensors(x), encoder(x)
    for (index, _, _), feature in zip(MEDIAPIPE_TAPS, tapped, strict=True):
        assert torch.equal(feature, values[index])


def test_decoder_concatenates_skips_and_predicts_full_resolution_logits():
    net = build_model("mediapipe-unet", base_channels=8, encoder_weights="mediapipe")
    # each decoder stage's first convolution sees the upsampled features *and* the skip, concatenated
    assert net.up8.conv.block[0].in_channels == 128 + 24
    assert net.up4.conv.block[0].in_channels == 4 * 8 + 16
    assert net.up2.conv.block[0].in_channels == 2 * 8 + 16
    logits = net(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 1, 64, 96)
    logits.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_random_start_differs_from_the_pretrained_encoder():
    pretrained = build_model("mediapipe-unet", encoder_weights="mediapipe")
    scratch = build_model("mediapipe-unet", encoder_weights="none")
    a, b = pretrained.encoder.layers["0"].weight, scratch.encoder.layers["0"].weight
    assert a.shape == b.shape and not torch.equal(a, b)


def test_checkpoint_rebuilds_without_the_tflite_file(tmp_path, monkeypatch):
    cfg = make_config("cpu-unet", {"input_size": 64})
    net = build_model("mediapipe-unet", base_channels=cfg.base_channels, encoder_weights="mediapipe").eval()
    state, rebuilt = rebuilt_without_the_tflite_file(net, cfg, tmp_path, monkeypatch)
    assert "encoder from MediaPipe" in state["weights"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net(x))


def test_a_file_that_is_not_a_tflite_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mediapipe-unet takes encoder_weights"):
        build_model("mediapipe-unet", encoder_weights=str(tmp_path / "weights.pt"))
