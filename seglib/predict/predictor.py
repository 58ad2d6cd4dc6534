"""The trained model behind every prediction: letterbox -> network -> probabilities at the photo's own size.

`Predictor.from_run(name)`, `Predictor.from_checkpoint(path)` and `Predictor.from_onnx(path)` load one with the
protocol its reported scores used (threshold and flip TTA chosen on val) unless told otherwise;
`predict_proba`, `predict_mask`, `alpha`, `cutout` and `replace_background` use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from seglib.geometry import network_input, to_photo
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.predict.outputs import (
    Background,
    composite,
    cutout_rgba,
    figure_alpha,
    parse_background,
    refine_probabilities,
)
from seglib.predict.val_choice import ValChoice
from seglib.settings import LETTERBOX, config_from_dict, input_multiple

if TYPE_CHECKING:
    from seglib.runs import Run


class Network(Protocol):
    """What a Predictor runs: (N,3,H,W) float32 network inputs -> (N,H,W) foreground probabilities, flip TTA
    averaged in when asked (`seglib.predict.networks.TorchNetwork`, `seglib.onnx_session.OnnxNetwork`)."""

    device: object

    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray: ...


class Predictor:
    """A trained model plus what it needs to predict: input size, normalisation, threshold.

    `predict_proba(rgb)` returns foreground probabilities at the input's own HxW. With `tta` the
    probabilities are the average of the plain and the horizontally flipped prediction.
    `threshold_source` says where the threshold came from (given, chosen on val, stored in the checkpoint).
    """

    def __init__(self, network: Network, checkpoint: dict, *, threshold: float | None = None,
                 tta: bool | None = None, source: str = "", threshold_source: str | None = None,
                 protocol: ValChoice | None = None, refine: bool = False):
        self.network = network
        self.refine = bool(refine)  # boundary refinement of the probabilities at the photo's resolution
        self.device = network.device
        self.cfg = config_from_dict(checkpoint["config"])  # how it was trained
        self.checkpoint = checkpoint
        self.tta, self.tta_source = _settle_tta(tta, protocol)
        if threshold is None and protocol is not None and protocol.chosen_on_val and protocol.tta == self.tta:
            threshold, threshold_source = protocol.threshold, protocol.source
        self.threshold = float(threshold if threshold is not None else checkpoint["threshold"])
        if not 0.0 < self.threshold < 1.0:  # a stored one is checked on load (seglib.schema); this is a given one
            raise SeglibError(f"threshold {self.threshold:g}: a probability threshold must be between 0 and 1")
        self.threshold_source = threshold_source or ("given" if threshold is not None else "stored in the checkpoint")
        self.source = source
        self.geometry = getattr(self.cfg, "geometry", LETTERBOX)
        self.set_input_size(checkpoint["input_size"])

    def set_input_size(self, size: int) -> None:
        """Run the network at another square input size than it was trained at (fully convolutional networks;
        an ONNX file exported with dynamic height and width): fewer pixels, faster, usually less accurate."""
        self.input_size = int(size)
        self.multiple = input_multiple(self.cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device="cpu", **kwargs) -> Predictor:
        """Load a checkpoint into PyTorch on `device`; unless given, the threshold and TTA are those chosen on val
        for this very checkpoint (its run's eval/val/metrics.json, or metrics/val_metrics.json beside a published
        one: the protocol its reported scores used), else its stored threshold without TTA."""
        from seglib.checkpoint import load_checkpoint, model_from_checkpoint
        from seglib.predict.networks import TorchNetwork
        from seglib.predict.val_choice import val_protocol

        state = load_checkpoint(path)
        model, _ = model_from_checkpoint(state)
        kwargs.setdefault("protocol", val_protocol(path, state))
        return cls(TorchNetwork(model, device), state, source=display_path(path), **kwargs)

    @classmethod
    def from_run(cls, run: str | Path | Run, which: str = "best", **kwargs) -> Predictor:
        """Load a run's best checkpoint (its last one with which="last"; a name means runs/NAME), with the
        threshold and TTA chosen on val for it when val has been evaluated (see `from_checkpoint`)."""
        from seglib.runs import Run

        return cls.from_checkpoint(Run.resolve(run).require(which), **kwargs)

    @classmethod
    def from_onnx(cls, path: str | Path, *, threads: int | None = None, check_weights: bool = True,
                  device="cpu", **kwargs) -> Predictor:
        """A Predictor running a model exported by `seglib export` in ONNX Runtime on the CPU (same letterbox,
        threshold and TTA as the PyTorch path). Its metadata is checked on load like a checkpoint
        (`seglib.schema`): threshold, input size, config and a normalisation equal to the one the PyTorch path
        feeds; its weights are checked finite unless `check_weights` is false (exports seglib verified itself)."""
        from seglib.onnx_session import load_onnx_network

        if str(device) != "cpu":
            raise SeglibError(f"{path}: the ONNX model runs on the CPU here, not on {device}")
        network, checkpoint = load_onnx_network(path, threads=threads, check_weights=check_weights)
        chosen = checkpoint.get("protocol")
        if chosen:
            kwargs.setdefault("protocol", ValChoice(chosen["threshold"], chosen["tta"],
                                                   f"{chosen['source']}, recorded in the export", True))
        return cls(network, checkpoint, source=display_path(path), **kwargs)

    def facts(self) -> dict:
        """What evaluation records about the model (`evaluate.ProbabilityModel`), from its checkpoint."""
        ck = self.checkpoint
        cfg = ck.get("config") or {}
        return {"epoch": ck.get("epoch"), "val_iou": ck.get("val_iou"), "weights": ck.get("weights", ""),
                "profile": cfg.get("profile", ""), "model": cfg.get("model", ""), "input_size": ck.get("input_size"),
                "threshold": ck.get("threshold", self.threshold), "data_split": ck.get("data_split")}

    def describe(self) -> str:
        """One line: which checkpoint, how good on val, which threshold, which device."""
        ck = self.checkpoint
        parts = [self.source or "checkpoint"]
        if "epoch" in ck:
            parts.append(f"epoch {ck['epoch']}")
        if "best_val_iou" in ck:
            parts.append(f"best val IoU {float(ck['best_val_iou']):.3f}")
        parts.append(f"threshold {self.threshold:.3g} ({self.threshold_source})")
        parts.append(f"input {self.input_size}px")
        parts.append(f"flip TTA {'on' if self.tta else 'off'} ({self.tta_source})")
        if self.refine:
            parts.append("edges refined to the photo (guided filter)")
        parts.append(f"on {self.device}")
        return ", ".join(parts)

    def network_input(self, image: np.ndarray) -> np.ndarray:
        """The (3,h,w) float32 array the network sees for an HxWx3 uint8 RGB photo (`seglib.geometry`)."""
        return network_input(image, self.input_size, self.geometry, self.multiple)

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for several HxWx3 uint8 RGB images, each at its own size."""
        inputs = [self.network_input(img) for img in images]
        probs: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, array in enumerate(inputs):  # one shape per square geometry; rect inputs differ by aspect
            by_shape.setdefault(array.shape, []).append(i)
        for group in by_shape.values():
            batch = np.stack([inputs[i] for i in group])
            for i, prob in zip(group, self.network(batch, self.tta), strict=True):
                probs[i] = to_photo(prob, images[i].shape[0], images[i].shape[1], self.geometry)
                if self.refine:
                    probs[i] = refine_probabilities(images[i], probs[i], self.threshold)
        return probs

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.predict_proba_batch([image])[0]

    def predict_mask(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Binary mask (uint8 0/1) at the image's own size."""
        t = self.threshold if threshold is None else threshold
        return (self.predict_proba(image) >= t).astype(np.uint8)

    def alpha(self, image: np.ndarray, *, refine: bool = False, prob: np.ndarray | None = None) -> np.ndarray:
        """An alpha matte (HxW uint8): 0 on the background, 255 inside the figure, a soft edge (`figure_alpha`)."""
        prob = self.predict_proba(image) if prob is None else prob
        return figure_alpha(image, prob, self.threshold, refine=refine)

    def cutout(self, image: np.ndarray, *, refine: bool = False) -> np.ndarray:
        """The figure cut out: HxWx4 uint8 RGBA, alpha from `alpha`."""
        return cutout_rgba(image, self.alpha(image, refine=refine))

    def replace_background(self, image: np.ndarray, background: str | Background = "blur", *,
                           refine: bool = False) -> np.ndarray:
        """The figure on another background: "blur", a colour ("white", "#RRGGBB", "R,G,B") or an image file."""
        background = parse_background(background) if isinstance(background, str) else background
        return composite(image, self.alpha(image, refine=refine), background)


def _settle_tta(tta: bool | None, protocol: ValChoice | None) -> tuple[bool, str]:
    """(TTA on?, why): as given, else as chosen on val, else off."""
    if tta is not None:
        return bool(tta), "given"
    if protocol is not None and protocol.chosen_on_val:
        return protocol.tta, "as on val"
    return False, "default"

