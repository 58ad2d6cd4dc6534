"""Prediction on any photo: letterbox -> model -> probabilities mapped back to the photo's exact size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.transforms import eval_transform, unletterbox


class Predictor:
    """A trained model plus what it needs to predict: input size, normalisation, threshold.

    `predict_proba(rgb)` returns foreground probabilities at the input's own HxW.
    """

    def __init__(self, model: torch.nn.Module, cfg, checkpoint: dict, *, device: str | torch.device = "cpu",
                 threshold: float | None = None, tta: bool = False, source: str = ""):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.input_size = int(checkpoint["input_size"])
        self.threshold = float(threshold if threshold is not None else checkpoint["threshold"])
        self.tta = tta
        self.source = source
        self.transform = eval_transform(self.input_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Predictor:
        state = load_checkpoint(path)
        model, cfg = model_from_checkpoint(state)
        return cls(model, cfg, state, source=str(path), **kwargs)

    @classmethod
    def from_run(cls, run: str | Path, which: str = "best", **kwargs) -> Predictor:
        """Load runs/NAME/best.pt; the threshold chosen on val (eval/val/metrics.json) is used when present."""
        import json

        from seglib.engine import run_dir_for

        run_dir = Path(run) if Path(run).is_dir() else run_dir_for(str(run))
        if "threshold" not in kwargs or kwargs["threshold"] is None:
            val_metrics = run_dir / "eval" / "val" / "metrics.json"
            if val_metrics.is_file():
                kwargs["threshold"] = json.loads(val_metrics.read_text())["threshold"]
        return cls.from_checkpoint(run_dir / f"{which}.pt", **kwargs)

    @torch.inference_mode()
    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for several HxWx3 uint8 RGB images, each at its own size."""
        if not images:
            return []
        batch = torch.stack([self.transform(image=img)["image"] for img in images]).to(self.device)
        probs = torch.sigmoid(self.model(batch))
        if self.tta:
            flipped = torch.sigmoid(self.model(torch.flip(batch, dims=[3])))
            probs = 0.5 * (probs + torch.flip(flipped, dims=[3]))
        probs = probs[:, 0].float().cpu().numpy()
        return [unletterbox(p, img.shape[0], img.shape[1]) for p, img in zip(probs, images, strict=True)]

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.predict_proba_batch([image])[0]

    def predict_mask(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Binary mask (uint8 0/1) at the image's own size."""
        t = self.threshold if threshold is None else threshold
        return (self.predict_proba(image) >= t).astype(np.uint8)
