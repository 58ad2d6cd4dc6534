"""seglib.model and seglib.losses on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from seglib.errors import ConfigError
from seglib.losses import DiceBCELoss
from seglib.model import UNet, build_model


def test_unet_shapes_and_channel_check():
    model = UNet(base_channels=4, depth=3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    assert model(torch.randn(2, 3, 48, 80)).shape == (2, 1, 48, 80)
    with pytest.raises(ValueError, match="3 input channels, got 4"):
        model(torch.randn(1, 4, 64, 64))


def test_smp_unet_from_scratch_builds_offline():
    model = build_model("smp-unet", encoder="resnet18", encoder_weights="none")
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_local_encoder_weights_file(tmp_path):
    donor = build_model("smp-unet", encoder="resnet18", encoder_weights="none")
    path = tmp_path / "resnet18.pth"
    torch.save(donor.encoder.state_dict(), path)
    model = build_model("smp-unet", encoder="resnet18", encoder_weights=str(path))
    key = "conv1.weight"
    assert torch.equal(model.encoder.state_dict()[key], donor.encoder.state_dict()[key])


def test_unknown_model_and_missing_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown"):
        build_model("segformer")
    with pytest.raises(ConfigError, match="not found"):
        build_model("smp-unet", encoder_weights=str(tmp_path / "none.pth"))


def test_imagenet_download_failure_says_how_to_train_from_scratch(monkeypatch):
    import segmentation_models_pytorch as smp

    def offline(*args, **kwargs):
        if kwargs.get("encoder_weights") == "imagenet":
            raise OSError("Network is unreachable")
        return original(*args, **kwargs)

    original = smp.Unet
    monkeypatch.setattr(smp, "Unet", offline)
    with pytest.raises(ConfigError, match="encoder_weights=none"):
        build_model("smp-unet", encoder_weights="imagenet")


def test_dice_bce_loss_weights():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    both = DiceBCELoss(1.0, 1.0)(logits, target)
    dice_only = DiceBCELoss(1.0, 0.0)(logits, target)
    bce_only = DiceBCELoss(0.0, 1.0)(logits, target)
    assert torch.allclose(both, dice_only + bce_only)
    assert torch.allclose(bce_only, torch.nn.functional.binary_cross_entropy_with_logits(logits, target))
    perfect = DiceBCELoss()(target * 40 - 20, target)
    assert perfect < 0.01
