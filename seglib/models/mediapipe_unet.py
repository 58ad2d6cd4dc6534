"""A canonical U-Net on MediaPipe's pretrained encoder (model=mediapipe-unet).

Encoder: the selfie segmenter's layers before its decoder (MobileNetV3-style blocks and its LR-ASPP context
block), run by `TFLiteNet` from the bundled .tflite, tapped at strides 2, 4, 8 and 16. Decoder (Ronneberger et
al.; smp's `Unet`): at each stride, upsample 2x, *concatenate* the encoder's skip, two 3x3 conv-BN-ReLU; a 2x2
transposed convolution (as MediaPipe's own head) takes the stride-2 features to one logit per pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from seglib.models.tflite_net import TFLiteNet
from seglib.models.unet_parts import Up

# The selfie segmenter's tensors the U-Net reads (tensor index in the .tflite graph, stride, channels):
# after the stem (h_swish), after the first squeeze-excite block, after the stride-8 inverted residuals, and
# the LR-ASPP context block's output (multiply_6), which becomes the U-Net's bottleneck.
MEDIAPIPE_TAPS = ((4, 2, 16), (25, 4, 16), (48, 8, 24), (167, 16, 128))


def encoder_spec(spec: dict, taps=MEDIAPIPE_TAPS) -> dict:
    """The selfie segmenter's graph cut after the last tapped tensor (its decoder and head removed)."""
    last = taps[-1][0]
    ends = [i for i, op in enumerate(spec["ops"]) if last in op["outputs"]]
    if not ends:
        raise ValueError(f"{spec.get('source', 'graph')}: tensor {last} not found; not MediaPipe's selfie segmenter")
    cut = dict(spec)
    cut["ops"] = spec["ops"][:ends[0] + 1]
    cut["output"] = last
    cut["taps"] = [list(t) for t in taps]
    return cut


class TFLiteEncoder(TFLiteNet):
    """A TFLiteNet that returns the tapped tensors (finest first) instead of one output."""

    def __init__(self, spec: dict, weights=None):
        super().__init__(spec, weights)
        self.taps = [tuple(t) for t in spec["taps"]]
        for index, _, channels in self.taps:
            shape = self._shape(index)
            if shape[3] != channels:
                raise ValueError(f"{spec['source']}: tensor {index} has {shape[3]} channels, expected {channels}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values = self.tensors(x)
        return [values[index] for index, _, _ in self.taps]


class MediaPipeUNet(nn.Module):
    """U-Net: MediaPipe's encoder, a concatenating decoder of width (4w, 2w, w) at strides 8, 4, 2."""

    def __init__(self, encoder: TFLiteEncoder, width: int = 16):
        super().__init__()
        self.encoder = encoder
        self.spec = encoder.spec  # saved in checkpoints: rebuilding needs no .tflite file
        (_, _, c2), (_, _, c4), (_, _, c8), (_, _, c16) = encoder.taps
        self.up8 = Up(c16, c8, 4 * width)
        self.up4 = Up(4 * width, c4, 2 * width)
        self.up2 = Up(2 * width, c2, width)
        self.head = nn.ConvTranspose2d(width, 1, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2, s4, s8, s16 = self.encoder(x)
        y = self.up2(self.up4(self.up8(s16, s8), s4), s2)
        return self.head(y)
