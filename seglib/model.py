"""Models: a compact U-Net of our own (built from named parts), smp's encoder U-Nets, and MediaPipe's selfie
segmenter (an encoder-decoder with skip connections) run in PyTorch from its bundled .tflite."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from seglib.errors import ConfigError
from seglib.settings import MEDIAPIPE_MODELS, MODELS
from seglib.unet_parts import DoubleConv, Down, OutConv, Up


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
# seglib/weights/NOTICE.md): the architecture and initial weights of model=mediapipe-selfie.
MEDIAPIPE_SELFIE_TFLITE = Path(__file__).with_name("weights") / "selfie_segmentation.tflite"
# BatchNorm momentum of smp models: PyTorch's default, whatever their encoder came with (see build_model)
SMP_BATCHNORM_MOMENTUM = 0.1


def build_model(name: str = "unet", *, base_channels: int = 16, depth: int = 4, encoder: str = "resnet18",
                encoder_weights: str | None = None, spec: dict | None = None) -> nn.Module:
    """One constructor for every model the workbook trains.

    `encoder_weights`: None/"none" trains from scratch. smp-unet: "imagenet" downloads ImageNet weights, a file
    path loads a local encoder state dict (for machines behind a firewall). mediapipe-selfie: "mediapipe" starts
    from the bundled MediaPipe weights, a path from another .tflite file of the same kind. `spec`
    (mediapipe-selfie): the graph saved in a checkpoint, so rebuilding needs no .tflite file.
    """
    if name == "mediapipe-selfie":
        return build_tflite_model(encoder_weights, spec)
    if name == "mediapipe-unet":
        return build_mediapipe_unet(encoder_weights, spec, width=base_channels)
    if name == "unet":
        if encoder_weights not in (None, "none"):
            raise ConfigError("encoder_weights applies to model=smp-unet only; the compact unet trains from scratch")
        return UNet(base_channels=base_channels, depth=depth)
    if name != "smp-unet":
        raise ConfigError(f"model {name!r} unknown; expected one of {', '.join(MODELS)}")
    import segmentation_models_pytorch as smp

    weights = None if encoder_weights in (None, "none") else encoder_weights
    local_file = weights is not None and weights != "imagenet"
    try:
        model = smp.Unet(encoder_name=encoder, encoder_weights=None if local_file else weights, classes=1)
    except KeyError as exc:
        raise ConfigError(f"encoder {encoder!r} unknown to segmentation_models_pytorch ({exc})") from None
    except Exception as exc:  # network failure while downloading weights
        if weights == "imagenet":
            raise ConfigError(
                f"could not download ImageNet weights for encoder {encoder!r} ({type(exc).__name__}: {exc}); "
                "train from scratch with --set encoder_weights=none, or point encoder_weights at a local "
                "weights file"
            ) from None
        raise
    # efficientnet BN momentum 0.01 lags from-scratch training (empty eval masks); set here, checkpoints too
    set_batchnorm_momentum(model, SMP_BATCHNORM_MOMENTUM)
    if local_file:
        load_encoder_weights(model, weights)
    return model


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BatchNorm layer (timm's BatchNormAct2d included)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def model_for(cfg, *, pretrained: bool = True, spec: dict | None = None) -> nn.Module:
    """The network a TrainConfig describes: with its `encoder_weights` when `pretrained`, else untrained
    (to load a checkpoint's weights into; `spec` is a mediapipe-selfie checkpoint's saved graph)."""
    return build_model(cfg.model, base_channels=cfg.base_channels, depth=cfg.depth, encoder=cfg.encoder,
                       encoder_weights=cfg.encoder_weights if pretrained else None, spec=spec)


def teacher_for(cfg) -> nn.Module:
    """The frozen network `distill_weight` pulls toward: MediaPipe's selfie segmenter with the run's MediaPipe
    weights (mediapipe-* models) or the bundled ones (other models), in eval mode, without gradients."""
    weights = cfg.encoder_weights if cfg.model in MEDIAPIPE_MODELS else "mediapipe"
    teacher = build_tflite_model("mediapipe" if weights in ("", "none") else weights).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _read_mediapipe(weights: str | None, model: str) -> tuple[dict, dict | None]:
    """MediaPipe's graph and its weights (None for a random initialisation, encoder_weights=none)."""
    from seglib.tflite_net import read_tflite

    source = MEDIAPIPE_SELFIE_TFLITE if weights in (None, "none", "mediapipe") else Path(weights)
    if weights not in (None, "none", "mediapipe") and source.suffix != ".tflite":
        raise ConfigError(f"{weights}: model={model} takes encoder_weights=mediapipe, none or a .tflite file")
    spec, tensors = read_tflite(source)
    return spec, None if weights in (None, "none") else tensors


def build_tflite_model(weights: str | None, spec: dict | None = None) -> nn.Module:
    """MediaPipe's graph as a TFLiteNet: its weights, a random initialisation ("none"), or a checkpoint's spec."""
    from seglib.tflite_net import TFLiteNet

    if spec is not None:
        return TFLiteNet(spec)
    return TFLiteNet(*_read_mediapipe(weights, "mediapipe-selfie"))


def build_mediapipe_unet(weights: str | None, spec: dict | None = None, *, width: int = 16) -> nn.Module:
    """The canonical U-Net on MediaPipe's encoder (seglib.mediapipe_unet); `spec` is a checkpoint's encoder graph."""
    from seglib.mediapipe_unet import MediaPipeUNet, TFLiteEncoder, encoder_spec

    if spec is not None:
        return MediaPipeUNet(TFLiteEncoder(spec), width=width)
    full, tensors = _read_mediapipe(weights, "mediapipe-unet")
    try:
        cut = encoder_spec(full)
        return MediaPipeUNet(TFLiteEncoder(cut, tensors), width=width)
    except ValueError as exc:
        raise ConfigError(f"{weights}: no MediaPipe selfie-segmenter encoder to build a U-Net on ({exc})") from None


def load_encoder_weights(model: nn.Module, path: str) -> None:
    """Load a local encoder state dict (safe loader) into an smp model's encoder: every tensor or none.

    The file holds a plain state dict or {"state_dict": ...}. It must fit the encoder exactly: a missing, unexpected
    or mis-shaped tensor is refused, naming it. The one allowance is what smp's encoders drop themselves when they
    load ImageNet weights (the classifier: ResNet's fc.weight and fc.bias, EfficientNet's _fc.*, ...), so an
    unmodified torchvision or timm checkpoint loads.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: encoder weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and state
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ConfigError(f"{path}: not an encoder state dict (expected a dict of tensors, or "
                          f"{{'state_dict': dict of tensors}}; found {_describe(state)})")
    encoder = model.encoder
    kept = _as_smp_passes_on(encoder, state)
    own = encoder.state_dict()
    # torch fills in a BatchNorm's num_batches_tracked when the file lacks it (torchvision's ImageNet files do)
    missing = [k for k in own if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in own]
    wrong_shape = [f"{k}: file {_shape(kept[k])} vs model {_shape(own[k])}"
                   for k in own if k in kept and kept[k].shape != own[k].shape]
    problems = [f"{label} {len(names)} ({_first_few(names)})"
                for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
                if names]
    if problems:
        raise ConfigError(f"{path}: encoder weights do not fit the {type(encoder).__name__}: {', '.join(problems)}")
    encoder.load_state_dict(dict(state))


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


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ",".join(str(n) for n in tensor.shape) + "]"


def _first_few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        return f"a dict with {len(keys)} keys ({_first_few(keys)})" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def architecture(model: str, base_channels: int = 16, depth: int = 4, encoder: str = "resnet18") -> str:
    """The architecture in a few words, for tables (experiment log, benchmark)."""
    if model == "unet":
        return f"U-Net width {base_channels}, depth {depth}"
    if model == "mediapipe-selfie":
        return "MediaPipe selfie segmenter (MobileNetV3-style)"
    if model == "mediapipe-unet":
        return f"U-Net on MediaPipe's encoder, decoder width {base_channels}"
    return f"smp U-Net, {encoder} encoder"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
