"""seglib.models.model and seglib.losses on tiny inputs."""

from __future__ import annotations

import pytest
import torch

from seglib.infra.errors import ConfigError
from seglib.losses import DiceBCELoss
from seglib.models.model import SMP_BATCHNORM_MOMENTUM, UNet, build_model, load_encoder_weights


def test_unet_shapes_and_channel_check():
    model = UNet(base_channels=4, depth=3)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    assert model(torch.randn(2, 3, 48, 80)).shape == (2, 1, 48, 80)
    with pytest.raises(ValueError, match="3 input channels, got 4"):
        model(torch.randn(1, 4, 64, 64))


def test_smp_unet_from_scratch_builds_offline():
    model = build_model("smp-unet", encoder="resnet18", encoder_weights="none")
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def _resnet18_state() -> dict:
    return build_model("smp-unet", encoder="resnet18", encoder_weights="none").encoder.state_dict()


def test_local_encoder_weights_file(tmp_path):
    donor = _resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save(donor, path)
    model = build_model("smp-unet", encoder="resnet18", encoder_weights="none")
    assert not torch.equal(model.encoder.state_dict()["conv1.weight"], donor["conv1.weight"])
    load_encoder_weights(model, str(path))
    loaded = model.encoder.state_dict()
    assert loaded.keys() == donor.keys()
    assert all(torch.equal(loaded[k], donor[k]) for k in donor)


def test_imagenet_style_encoder_weights_file_loads(tmp_path):
    """A torchvision ResNet file as it comes: wrapped in {"state_dict": ...}, with the ImageNet classifier smp drops
    (fc.weight, fc.bias) and without BatchNorm's num_batches_tracked."""
    donor = {k: v for k, v in _resnet18_state().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save({"state_dict": {**donor, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}}, path)
    model = build_model("smp-unet", encoder="resnet18", encoder_weights=str(path))
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], donor[k]) for k in donor)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("layer4.1.bn2.weight"), r"missing 1 \(layer4\.1\.bn2\.weight\)"),
    (lambda s: s.update({"head.weight": torch.zeros(2)}), r"unexpected 1 \(head\.weight\)"),
    # EfficientNet's classifier is allowed in an EfficientNet file only: smp's ResNetEncoder does not drop it
    (lambda s: s.update({"_fc.weight": torch.zeros(2)}), r"unexpected 1 \(_fc\.weight\)"),
    (lambda s: s.update({"conv1.weight": torch.zeros(32, 3, 7, 7)}),
     r"wrong shape 1 \(conv1\.weight: file \[32,3,7,7\] vs model \[64,3,7,7\]\)"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("layer4.")],
     r"missing \d+ \(layer4\.0\.conv1\.weight, .*, \.\.\.\)"),
], ids=["missing", "unexpected", "other-classifier", "wrong-shape", "many-missing"])
def test_encoder_weights_file_that_does_not_fit_is_refused(tmp_path, change, message):
    state = _resnet18_state()
    change(state)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=f"encoder weights do not fit the ResNetEncoder: {message}") as info:
        build_model("smp-unet", encoder="resnet18", encoder_weights=str(path))
    assert "\n" not in str(info.value)


def test_non_weights_file_is_refused(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ConfigError, match="not a loadable weights file"):
        build_model("smp-unet", encoder="resnet18", encoder_weights=str(text))
    other = tmp_path / "other.pth"
    torch.save({"epoch": 3, "lr": 0.1}, other)
    with pytest.raises(ConfigError, match="not an encoder state dict"):
        build_model("smp-unet", encoder="resnet18", encoder_weights=str(other))


@pytest.mark.parametrize("encoder", ["efficientnet-b0", "timm-efficientnet-b0", "resnet18"])
@pytest.mark.filterwarnings("ignore:`timm-` encoders are deprecated:DeprecationWarning")
def test_smp_batchnorm_momentum_is_pytorch_default(encoder):
    """smp's efficientnet-b* encoders come with momentum 0.01; every BatchNorm of an smp model gets 0.1."""
    model = build_model("smp-unet", encoder=encoder, encoder_weights="none")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and {m.momentum for m in norms} == {SMP_BATCHNORM_MOMENTUM} == {0.1}


def _blobs(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with one bright disc each, and the disc as the mask."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=generator)
    radius = torch.randint(size // 8, size // 4, (n, 1, 1), generator=generator)
    inside = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2 <= radius**2
    mask = inside.float()[:, None]
    colour = torch.tensor([0.9, 0.6, 0.4])[None, :, None, None]
    return 0.3 * torch.rand(n, 3, size, size, generator=generator) + mask * colour, mask


def _iou(logits: torch.Tensor, mask: torch.Tensor) -> float:
    pred, target = logits > 0, mask > 0.5
    return ((pred & target).sum() / (pred | target).sum().clamp(min=1)).item()


def _train_tiny_efficientnet_unet(steps: int) -> tuple[float, float]:
    """(eval-mode IoU, batch-statistics IoU) on held-out blobs after `steps` Adam steps of batch 4 at 32 px."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        model = build_model("smp-unet", encoder="efficientnet-b0", encoder_weights="none")
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = DiceBCELoss()
        val_images, val_masks = _blobs(8, 32, generator)
        model.train()
        for _ in range(steps):
            images, masks = _blobs(4, 32, generator)
            loss = loss_fn(model(images), masks)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            eval_iou = _iou(model.eval()(val_images), val_masks)
            batch_stats_iou = _iou(model.train()(val_images), val_masks)
    return eval_iou, batch_stats_iou


def test_smp_efficientnet_from_scratch_predicts_in_eval_mode():
    """From random weights, eval mode (running statistics) scores about as well as batch statistics do.

    With smp's momentum 0.01 the running statistics still mostly hold their initial values after 60 steps, and the
    eval-mode masks come out empty (IoU 0.00 against 0.94 with batch statistics)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster than two on a shared CPU
    try:
        eval_iou, batch_stats_iou = _train_tiny_efficientnet_unet(steps=60)
    finally:
        torch.set_num_threads(threads)
    assert batch_stats_iou > 0.8, "the tiny task should be learnt in 60 steps"
    assert eval_iou > batch_stats_iou - 0.1, f"eval-mode IoU {eval_iou:.2f} vs {batch_stats_iou:.2f} with batch stats"


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
