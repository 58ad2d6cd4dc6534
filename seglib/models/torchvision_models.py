"""torchvision's segmentation models on a MobileNetV3-Large backbone (LR-ASPP, DeepLabV3) as seglib models: one
logit per pixel at the input's resolution, from scratch, from torchvision's ImageNet backbone weights (downloaded
into torch.hub's cache) or from a local copy of such a file."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

from seglib.infra.errors import ConfigError, first_line
from seglib.models.weights_files import check_fit, read_state_dict

IMAGENET_BACKBONE = MobileNet_V3_Large_Weights.IMAGENET1K_V1


class LogitsOnly(nn.Module):
    """A torchvision segmentation model returning its `out` logits (N, 1, H, W) instead of a dict."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def build_lraspp(*, encoder_weights: str) -> nn.Module:
    return _build(lraspp_mobilenet_v3_large, encoder_weights)


def build_deeplabv3(*, encoder_weights: str) -> nn.Module:
    return _build(lambda **kw: deeplabv3_mobilenet_v3_large(aux_loss=False, **kw), encoder_weights)


def _build(constructor: Callable[..., nn.Module], encoder_weights: str) -> nn.Module:
    """One output class; the backbone from ImageNet weights ("imagenet"), a local file, or random ("none")."""
    backbone = IMAGENET_BACKBONE if encoder_weights == "imagenet" else None
    try:
        net = constructor(weights=None, weights_backbone=backbone, num_classes=1)
    # urllib's errors are OSErrors, a bad download fails its hash check (RuntimeError), a broken cached copy
    # does not unpickle
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        if backbone is None:
            raise
        raise _download_failed(exc) from None
    if encoder_weights not in ("none", "imagenet"):
        load_backbone_weights(net.backbone, encoder_weights)
    return LogitsOnly(net)


def _download_failed(exc: BaseException) -> ConfigError:
    """The one line for ImageNet weights that could not be had: which, from where, why, and what to do instead."""
    cache = Path(torch.hub.get_dir(), "checkpoints")
    return ConfigError(f"setting encoder_weights=imagenet: could not download {IMAGENET_BACKBONE!r} from "
                       f"{IMAGENET_BACKBONE.url} into {cache} ({type(exc).__name__}: {first_line(exc)}); train from "
                       "scratch with --set encoder_weights=none, or point encoder_weights at a local copy of that file")


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """A MobileNetV3-Large state dict file (torchvision's own, its `features.` layers; the ImageNet classifier is
    left out) into the segmentation model's backbone: every tensor or none."""
    state = read_state_dict(path, "backbone")
    kept = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    check_fit(backbone, kept, path, "backbone")
    backbone.load_state_dict(kept)
