"""A PyTorch model as `seglib.predict.Predictor` runs a network: NumPy batches in, probabilities out.

(The ONNX Runtime counterpart, `seglib.onnx_session.OnnxNetwork`, needs no torch: see `seglib.predict.runtimes`.)
"""

from __future__ import annotations

import numpy as np
import torch

from seglib.infra.devices import resolve_device


class TorchNetwork:
    """`network(batch, tta)`: an (N,3,H,W) float32 array -> (N,H,W) foreground probabilities from `model` on
    `device`, the mirror images flipped back and averaged in when `tta` (one call of the model for both)."""

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        if tta:
            both = torch.sigmoid(self.model(torch.cat([x, torch.flip(x, dims=[3])])))
            probs = 0.5 * (both[:len(x)] + torch.flip(both[len(x):], dims=[3]))
        else:
            probs = torch.sigmoid(self.model(x))
        return probs[:, 0].float().cpu().numpy()
