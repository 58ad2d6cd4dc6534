"""Models: `build_model`/`model_for` build any model of the registry (seglib.models.model_registry), and the builders of
our compact U-Net (built from named parts), smp's encoder U-Nets and MediaPipe's selfie segmenter (an
encoder-decoder with skip connections, run in PyTorch from its bundled .tflite) and a U-Net on its encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from seglib.infra.errors import ConfigError
from seglib.models.model_registry import NO_WEIGHTS, UNET, model_entry
from seglib.models.unet_parts import DoubleConv, Down, OutConv, Up
from seglib.models.weights_files import check_fit, read_state_dict
from seglib.settings import TrainConfig


class UNet(nn.Module):
    """Compact U-Net: `depth` down/up levels, channel width doubling from `base_channels`."""

    def __init__(self, in_channels: int = 3, classes: int = 1, base_channels: int = 16, depth: int = 4):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.in_channels = in_channels
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth)))
        self.outc = OutConv(widths[0], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got {x.shape[1]}")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


# MediaPipe's selfie segmentation model, copied unchanged from the mediapipe 0.10.21 wheel (Apache-2.0,
# seglib/models/weights/NOTICE.md): the architecture and initial weights of model=mediapipe-selfie.
MEDIAPIPE_SELFIE_TFLITE = Path(__file__).with_name("weights") / "selfie_segmentation.tflite"
# BatchNorm momentum of smp models: PyTorch's default, whatever their encoder came with (see build_smp_unet)
SMP_BATCHNORM_MOMENTUM = 0.1


def build_model(name: str = UNET, *, spec: dict | None = None, **settings) -> nn.Module:
    """One constructor for every registered model (smp's `create_model`): `settings` are TrainConfig's, its
    defaults fill the rest, `encoder_weights=None` means none. `spec`: a checkpoint's saved graph."""
    if "encoder_weights" in settings and settings["encoder_weights"] is None:
        settings["encoder_weights"] = "none"
    return model_for(TrainConfig(model=name, **settings), spec=spec)


def model_for(cfg: TrainConfig, *, pretrained: bool = True, spec: dict | None = None) -> nn.Module:
    """The network a TrainConfig describes, built by its registry entry: from its `encoder_weights` when
    `pretrained`, else untrained (to load a checkpoint's weights into; `spec` is the graph such a checkpoint saved)."""
    start = cfg if pretrained else cfg.replace(encoder_weights="none")
    return model_entry(cfg.model).build(start, spec)


def build_unet(*, base_channels: int, depth: int) -> nn.Module:
    return UNet(base_channels=base_channels, depth=depth)


def build_smp_unet(*, encoder: str, encoder_weights: str) -> nn.Module:
    """smp's U-Net: from scratch ("none"), ImageNet weights smp downloads ("imagenet"), or a local encoder file."""
    import segmentation_models_pytorch as smp

    local_file = encoder_weights not in ("none", "imagenet")
    try:
        model = smp.Unet(encoder_name=encoder, encoder_weights="imagenet" if encoder_weights == "imagenet" else None,
                         classes=1)
    except KeyError as exc:
        raise ConfigError(f"encoder {encoder!r} unknown to segmentation_models_pytorch ({exc})") from None
    except Exception as exc:  # network failure while downloading weights
        if encoder_weights == "imagenet":
            raise ConfigError(
                f"could not download ImageNet weights for encoder {encoder!r} ({type(exc).__name__}: {exc}); "
                "train from scratch with --set encoder_weights=none, or point encoder_weights at a local "
                "weights file"
            ) from None
        raise
    # efficientnet BN momentum 0.01 lags from-scratch training (empty eval masks); set here, checkpoints too
    set_batchnorm_momentum(model, SMP_BATCHNORM_MOMENTUM)
    if local_file:
        load_encoder_weights(model, encoder_weights)
    return model


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BatchNorm layer (timm's BatchNormAct2d included)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def teacher_for(cfg: TrainConfig) -> nn.Module:
    """The frozen network `distill_weight` pulls toward: MediaPipe's selfie segmenter with the run's own .tflite
    weights when it started from one, else the bundled ones, in eval mode, without gradients."""
    weights = cfg.encoder_weights if cfg.encoder_weights.endswith(".tflite") else "mediapipe"
    teacher = build_mediapipe_selfie(encoder_weights=weights).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def starting_state(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights (and floating-point buffers) that the run's starting weights (`encoder_weights`) give a value, at
    that value: what L2-SP pulls toward and WiSE-FT interpolates toward, made again from the config alone. A tensor
    that starts from a random or a constant initialisation (a new decoder, head or normalisation layer) is left out.
    Told apart by building the start three times: twice from the weights under two seeds (a loaded tensor is the same
    in both, a random one is not) and once from none (a constant initialisation is the same there too). The global
    random state is left as it was."""
    if cfg.encoder_weights == NO_WEIGHTS:
        return {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        first = model_for(cfg).state_dict()
        torch.manual_seed(cfg.seed + 1)
        second = model_for(cfg).state_dict()
        torch.manual_seed(cfg.seed)
        scratch = model_for(cfg.replace(encoder_weights=NO_WEIGHTS)).state_dict()

    def loaded(name: str, value: torch.Tensor) -> bool:
        other = scratch.get(name)
        constant = other is not None and other.shape == value.shape and torch.equal(other, value)
        return value.is_floating_point() and torch.equal(value, second[name]) and not constant

    return {name: value for name, value in first.items() if loaded(name, value)}


def _read_mediapipe(weights: str) -> tuple[dict, dict | None]:
    """MediaPipe's graph and its weights (None for a random initialisation, encoder_weights=none)."""
    from seglib.models.tflite_net import read_tflite

    spec, tensors = read_tflite(MEDIAPIPE_SELFIE_TFLITE if weights in ("none", "mediapipe") else Path(weights))
    return spec, None if weights == "none" else tensors


def build_mediapipe_selfie(*, encoder_weights: str, spec: dict | None = None) -> nn.Module:
    """MediaPipe's graph as a TFLiteNet: its weights, a random initialisation ("none"), or a checkpoint's spec."""
    from seglib.models.tflite_net import TFLiteNet

    if spec is not None:
        return TFLiteNet(spec)
    return TFLiteNet(*_read_mediapipe(encoder_weights))


def build_mediapipe_unet(*, base_channels: int, encoder_weights: str, spec: dict | None = None) -> nn.Module:
    """The canonical U-Net on MediaPipe's encoder (seglib.models.mediapipe_unet); `spec` is a checkpoint's encoder graph."""
    from seglib.models.mediapipe_unet import MediaPipeUNet, TFLiteEncoder, encoder_spec

    if spec is not None:
        return MediaPipeUNet(TFLiteEncoder(spec), width=base_channels)
    full, tensors = _read_mediapipe(encoder_weights)
    try:
        cut = encoder_spec(full)
        return MediaPipeUNet(TFLiteEncoder(cut, tensors), width=base_channels)
    except ValueError as exc:
        raise ConfigError(f"{encoder_weights}: no MediaPipe selfie-segmenter encoder to build a U-Net on ({exc})") \
            from None


def load_encoder_weights(model: nn.Module, path: str) -> None:
    """Load a local encoder state dict (safe loader) into an smp model's encoder: every tensor or none.

    The file holds a plain state dict or {"state_dict": ...}. It must fit the encoder exactly: a missing, unexpected
    or mis-shaped tensor is refused, naming it. The one allowance is what smp's encoders drop themselves when they
    load ImageNet weights (the classifier: ResNet's fc.weight and fc.bias, EfficientNet's _fc.*, ...), so an
    unmodified torchvision or timm checkpoint loads.
    """
    state = read_state_dict(path, "encoder")
    check_fit(model.encoder, _as_smp_passes_on(model.encoder, state), path, "encoder")
    model.encoder.load_state_dict(dict(state))


class _Probe(Exception):
    """Stops a load_state_dict before it copies anything (see _as_smp_passes_on)."""


def _as_smp_passes_on(encoder: nn.Module, state: dict) -> dict:
    """`state` as the encoder's own load_state_dict hands it on to torch, without loading anything.

    smp's encoders drop the ImageNet classifier (and rename a few legacy keys) before calling torch's
    load_state_dict; a pre-hook on the encoder sees the result first and stops the load there.
    """
    seen: dict = {}

    def capture(module, state_dict, *args):
        seen.update(state_dict)
        raise _Probe

    handle = encoder.register_load_state_dict_pre_hook(capture)
    try:
        encoder.load_state_dict(dict(state))
    except _Probe:
        pass
    finally:
        handle.remove()
    return seen


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
