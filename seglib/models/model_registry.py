"""The models seglib trains, one entry each (as smp's `create_model` maps names to classes): its name, the builder
and the settings it takes, its stride, the starting weights it accepts, and whether a checkpoint saves its graph.

Everything that depends on the model asks its entry: the choices of `model` and the input-size rule in
`seglib.settings`, `seglib.models.model.model_for`, the checkpoint's record of its starting weights and its rebuild, the
stored-model schema, ONNX export, the model card and the experiment log. Adding a model is one entry here plus its
builder (docs/extending.md). This module imports no torch: the CLI and `seglib.settings` read it without the cost,
and a builder's module is imported only when a model is built.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import seglib  # the settings' type is named through it: seglib.settings sits above this registry and imports it
from seglib.infra.errors import ConfigError

if typing.TYPE_CHECKING:
    from torch import nn

# The model names, each written once: TrainConfig's `model` choices, the profiles and the entries below use these.
UNET, SMP_UNET, MEDIAPIPE_SELFIE, MEDIAPIPE_UNET, LRASPP_MOBILENET, DEEPLABV3_MOBILENET = (
    "unet", "smp-unet", "mediapipe-selfie", "mediapipe-unet", "lraspp-mobilenet-v3-large",
    "deeplabv3-mobilenet-v3-large")


FILE = "file"  # a StartingWeights option: `encoder_weights` is the path of a local file
# the named values of `encoder_weights` (every other value is a file path)
NAMED_OPTIONS = NO_WEIGHTS, MEDIAPIPE_WEIGHTS, IMAGENET_WEIGHTS = ("none", "mediapipe", "imagenet")
OWN_WEIGHTS = "trained here from random initialisation (no third-party weights)"
MEDIAPIPE_LICENCE = "derived from MediaPipe's selfie segmentation model (Apache-2.0; `seglib/models/weights/NOTICE.md`)"
BUNDLED_TFLITE = "the bundled selfie_segmentation.tflite (mediapipe 0.10.21 wheel, Apache-2.0)"
LOCAL_FILE_LICENCE = "start from the local file {encoder_weights}: their terms are those of the file's source"
TORCHVISION_IMAGENET = "torchvision's MobileNet_V3_Large_Weights.IMAGENET1K_V1"
TORCHVISION_LICENCE = (f"the backbone starts from {TORCHVISION_IMAGENET} (ImageNet-trained); torchvision notes that "
                       "pre-trained weights may carry the terms of the data set they were trained on")


@dataclass(frozen=True)
class StartingWeights:
    """One value `encoder_weights` may take for a model: where training starts, for the run's record and its card.

    `words` and `licence` are templates: `{encoder_weights}` (the file) and any other setting's name in braces are
    filled in from the run's config."""

    option: str  # "none", "mediapipe", "imagenet", or FILE (a local file path)
    words: str  # the checkpoint's `weights` field and the model card's "Initial weights"
    licence: str  # the model card's "Licence of the weights"
    suffix: str = ""  # FILE only: the ending a file name must have ("" = any)

    def accepts(self, value: str) -> bool:
        if self.option != FILE:
            return value == self.option
        return bool(value) and value not in NAMED_OPTIONS and value.endswith(self.suffix)

    def describe(self, cfg: seglib.settings.TrainConfig) -> str:
        return self.words.format(**cfg.to_dict())

    def licence_for(self, cfg: seglib.settings.TrainConfig) -> str:
        return self.licence.format(**cfg.to_dict())

    def in_words(self) -> str:
        """How a refusal lists this option: `none`, or `a .tflite file`."""
        if self.option != FILE:
            return self.option
        return f"a {self.suffix} file" if self.suffix else "a local file"


SCRATCH = StartingWeights(NO_WEIGHTS, "random initialisation (trained from scratch)", OWN_WEIGHTS)


def _unet_stride(cfg: seglib.settings.TrainConfig) -> int:
    return 2**cfg.depth  # one 2x2 max-pool per level


@dataclass(frozen=True)
class ModelEntry:
    """One model: everything seglib keys on its name."""

    name: str
    summary: str  # one line: what it is
    builder: str  # "module:function"; called with the `settings` below as keyword arguments (and `spec`)
    settings: tuple[str, ...]  # the TrainConfig fields the builder takes, typed as TrainConfig declares them
    stride: int | Callable[[seglib.settings.TrainConfig], int]  # input height and width must be multiples of it
    weights: tuple[StartingWeights, ...]  # the `encoder_weights` it accepts, in the order a refusal lists them
    words: str  # the architecture in a few words for tables (experiment log, bench, model card); {setting} filled
    stride_rule: str = "its stride"  # how the stride follows from the settings, for the refusal of a size
    saves_graph: bool = False  # its graph is read from a file: checkpoints save it (`model_spec`), builder gets `spec`
    small: Mapping[str, Any] = field(default_factory=dict)  # settings for its cheapest build (the conformance tests)
    min_train_batch: int = 1  # smallest training batch its layers accept

    def stride_for(self, cfg: seglib.settings.TrainConfig) -> int:
        return self.stride(cfg) if callable(self.stride) else self.stride

    def starting_weights(self, value: str) -> StartingWeights:
        """The option `encoder_weights=value` selects; a ConfigError listing the accepted ones when none does."""
        for option in self.weights:
            if option.accepts(value):
                return option
        *first, last = [option.in_words() for option in self.weights]
        accepted = f"{', '.join(first)} or {last}" if first else last
        raise ConfigError(f"setting encoder_weights={value}: model={self.name} takes encoder_weights={accepted}")

    def describe(self, cfg: seglib.settings.TrainConfig) -> str:
        return self.words.format(**cfg.to_dict())

    def build(self, cfg: seglib.settings.TrainConfig, spec: dict | None = None) -> nn.Module:
        """The network `cfg` describes, from its `encoder_weights` (`spec`: a checkpoint's saved graph)."""
        self.starting_weights(cfg.encoder_weights)  # refused before anything is read or downloaded
        arguments = {name: getattr(cfg, name) for name in self.settings}
        if self.saves_graph:
            arguments["spec"] = spec
        return self.builder_function()(**arguments)

    def builder_function(self) -> Callable[..., nn.Module]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


def _mediapipe_weights(words: str) -> tuple[StartingWeights, ...]:
    """MediaPipe's weights (bundled, or another .tflite of the same graph) or none; `{source}` in `words` names them."""
    return (StartingWeights(MEDIAPIPE_WEIGHTS, words.format(source=BUNDLED_TFLITE), MEDIAPIPE_LICENCE), SCRATCH,
            StartingWeights(FILE, words.format(source="local file {encoder_weights}"), MEDIAPIPE_LICENCE, ".tflite"))


def _torchvision_weights(head: str) -> tuple[StartingWeights, ...]:
    """From scratch, torchvision's ImageNet backbone (downloaded), or a local copy of a MobileNetV3-Large file."""
    return (SCRATCH,
            StartingWeights(IMAGENET_WEIGHTS, f"ImageNet-trained MobileNetV3-Large backbone ({TORCHVISION_IMAGENET}, "
                                        f"downloaded by torchvision); {head} from random initialisation",
                            TORCHVISION_LICENCE),
            StartingWeights(FILE, "MobileNetV3-Large backbone initialised from local file {encoder_weights}; "
                                  f"{head} from random initialisation", f"the backbone weights {LOCAL_FILE_LICENCE}"))


ENTRIES = (
    ModelEntry(
        UNET, "a compact U-Net of our own (seglib.models.model.UNet), channel width doubling at each level",
        "seglib.models.model:build_unet", ("base_channels", "depth"), _unet_stride, (SCRATCH,),
        "U-Net width {base_channels}, depth {depth}", stride_rule="2**depth", small={"base_channels": 4, "depth": 2}),
    ModelEntry(
        SMP_UNET, "segmentation_models_pytorch's U-Net on one of its encoders",
        "seglib.models.model:build_smp_unet", ("encoder", "encoder_weights"), 32,
        (SCRATCH,
         StartingWeights(IMAGENET_WEIGHTS, "ImageNet-pretrained {encoder} encoder (downloaded by smp)",
                         "the encoder starts from smp's ImageNet-pretrained {encoder} weights; their terms are those "
                         "of their source (smp's encoder table)"),
         StartingWeights(FILE, "{encoder} encoder initialised from local file {encoder_weights}",
                         f"the encoder weights {LOCAL_FILE_LICENCE}")),
        "smp U-Net, {encoder} encoder", small={"encoder": "mobilenet_v2"}),
    ModelEntry(
        MEDIAPIPE_SELFIE, "MediaPipe's selfie segmenter run in PyTorch from its .tflite graph, fine-tuned",
        "seglib.models.model:build_mediapipe_selfie", ("encoder_weights",), 16,
        _mediapipe_weights("MediaPipe selfie segmentation weights from {source}, fine-tuned"),
        "MediaPipe selfie segmenter (MobileNetV3-style)", saves_graph=True),
    ModelEntry(
        MEDIAPIPE_UNET, "a canonical U-Net decoder on MediaPipe's selfie-segmenter encoder (seglib.models.mediapipe_unet)",
        "seglib.models.model:build_mediapipe_unet", ("base_channels", "encoder_weights"), 16,
        _mediapipe_weights("encoder from MediaPipe selfie segmentation weights ({source}); decoder from random "
                           "initialisation"),
        "U-Net on MediaPipe's encoder, decoder width {base_channels}", saves_graph=True, small={"base_channels": 4}),
    ModelEntry(
        LRASPP_MOBILENET, "torchvision's LR-ASPP head on a MobileNetV3-Large backbone",
        "seglib.models.torchvision_models:build_lraspp", ("encoder_weights",), 16, _torchvision_weights("LR-ASPP head"),
        "LR-ASPP on MobileNetV3-Large (torchvision)"),
    ModelEntry(
        DEEPLABV3_MOBILENET, "torchvision's DeepLabV3 (ASPP) head on a MobileNetV3-Large backbone",
        "seglib.models.torchvision_models:build_deeplabv3", ("encoder_weights",), 16, _torchvision_weights("DeepLabV3 head"),
        "DeepLabV3 on MobileNetV3-Large (torchvision)",
        min_train_batch=2),  # its image-pooling branch batch-normalises a 1x1 map: one image has no variance
)
MODEL_REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in ENTRIES}
MODELS = tuple(MODEL_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name`; a ConfigError listing the models when there is none."""
    try:
        return MODEL_REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"model {name!r} unknown; expected one of {', '.join(MODELS)}") from None


def check_input_size(cfg: seglib.settings.TrainConfig, height: int, width: int, what: str = "") -> None:
    """Height and width must be multiples of the model's stride (smp's `check_input_shape`): a ConfigError naming
    the stride, about `what` (default: the input's size)."""
    entry = model_entry(cfg.model)
    stride = entry.stride_for(cfg)
    if height % stride or width % stride:
        rule = f"{what}: must be a multiple" if what else f"input {height}x{width}: height and width must be multiples"
        raise ConfigError(f"{rule} of {stride} ({cfg.model}: {entry.stride_rule})")
