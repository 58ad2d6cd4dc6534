"""The trained model behind every prediction: letterbox -> network -> probabilities at the photo's own size.

`Predictor.from_run(name)`, `Predictor.from_checkpoint(path)` and `Predictor.from_onnx(path)` load one with the
protocol its reported scores used (threshold, flip TTA and the prediction-time levers chosen on val) unless told
otherwise; `predict_proba`, `predict_mask`, `alpha`, `cutout` and `replace_background` use it. The levers
(`seglib.predict.levers.InferenceOptions`) apply in this order: the input sizes (several averaged, each capped by
the photo's own size), the second look at each figure, then the edges refined at the photo's resolution.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from seglib.geometry import network_input
from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.paths import display_path
from seglib.predict.levers import InferenceOptions
from seglib.predict.outputs import (
    Background,
    composite,
    cutout_rgba,
    figure_alpha,
    parse_background,
    refine_probabilities,
)
from seglib.predict.scales import averaged_over_sizes, photo_sizes
from seglib.predict.second_look import second_look
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
    `inference`: the prediction-time levers (`InferenceOptions`: input sizes, the cap on magnification, a second
    look, refined edges); as chosen on val when not given, else none. `refine` is `inference.refine`.
    """

    def __init__(self, network: Network, checkpoint: dict, *, threshold: float | None = None,
                 tta: bool | None = None, source: str = "", threshold_source: str | None = None,
                 protocol: ValChoice | None = None, inference: InferenceOptions | None = None):
        self.network = network
        self.device = network.device
        self.cfg = config_from_dict(checkpoint["config"])  # how it was trained
        self.checkpoint = checkpoint
        self.source = source
        self.geometry = getattr(self.cfg, "geometry", LETTERBOX)
        self.set_input_size(checkpoint["input_size"])
        self.tta, self.tta_source = _settle_tta(tta, protocol)
        self.inference_source = "given" if inference is not None else \
            "as on val" if protocol is not None and protocol.chosen_on_val else "default"
        self.inference = inference if inference is not None else \
            protocol.inference if self.inference_source == "as on val" else InferenceOptions()
        if threshold is None and protocol is not None and protocol.chosen_on_val and protocol.tta == self.tta \
                and protocol.inference.levers == self.inference.levers:  # val's threshold went with its levers
            threshold, threshold_source = protocol.threshold, protocol.source
        self.threshold = float(threshold if threshold is not None else checkpoint["threshold"])
        if not 0.0 < self.threshold < 1.0:  # a stored one is checked on load (seglib.schema); this is a given one
            raise SeglibError(f"threshold {self.threshold:g}: a probability threshold must be between 0 and 1")
        self.threshold_source = threshold_source or ("given" if threshold is not None else "stored in the checkpoint")

    @property
    def inference(self) -> InferenceOptions:
        """The prediction-time levers in use (`InferenceOptions`)."""
        return self._inference

    @inference.setter
    def inference(self, options: InferenceOptions) -> None:
        if not isinstance(options, InferenceOptions):
            raise ConfigError(f"inference={options!r}: expected an InferenceOptions")
        odd = [s for s in options.scales if s % self.multiple]
        if odd:
            raise ConfigError(f"scales={','.join(map(str, options.scales))}: {odd[0]} is not a multiple of "
                              f"{self.multiple}, the input stride of model {self.cfg.model}")
        fixed = getattr(self.network, "fixed_hw", None)
        if fixed is not None and (set(options.scales) - {self.input_size} or options.max_upscale):
            raise SeglibError(f"{self.source or 'this model'}: exported with a fixed {fixed[0]}x{fixed[1]} input; "
                              "other input sizes (scales, max_upscale) need an export with dynamic height and width")
        self._inference = options

    @property
    def refine(self) -> bool:
        """Boundary refinement of the probabilities at the photo's resolution (`inference.refine`)."""
        return self._inference.refine

    @refine.setter
    def refine(self, value: bool) -> None:
        self.inference = replace(self._inference, refine=bool(value))

    def set_input_size(self, size: int) -> None:
        """Run the network at another square input size than it was trained at (fully convolutional networks;
        an ONNX file exported with dynamic height and width): fewer pixels, faster, usually less accurate."""
        self.input_size = int(size)
        self.multiple = input_multiple(self.cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device="cpu", **kwargs) -> Predictor:
        """Load a checkpoint into PyTorch on `device`; unless given, the threshold and TTA are those chosen on val
        for this very checkpoint (its run's eval/val/metrics.json, or metrics/val_metrics.json beside a published
        one: the protocol its reported scores used), else its stored threshold without TTA. So are the levers
        (`inference`): those the run adopted; given ones take the threshold of their own val evaluation."""
        from seglib.checkpoint import load_checkpoint, model_from_checkpoint
        from seglib.predict.networks import TorchNetwork
        from seglib.predict.val_choice import val_protocol

        state = load_checkpoint(path)
        model, _ = model_from_checkpoint(state)
        kwargs = given_levers(kwargs)
        kwargs.setdefault("protocol", val_protocol(path, state, kwargs.get("inference")))
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
                                                   f"{chosen['source']}, recorded in the export", True,
                                                   InferenceOptions.from_record(chosen)))
        return cls(network, checkpoint, source=display_path(path), **given_levers(kwargs))

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
        if not self.inference.scales:  # else the levers name the sizes
            parts.append(f"input {self.input_size}px")
        parts.append(f"flip TTA {'on' if self.tta else 'off'} ({self.tta_source})")
        if self.inference.describe():
            parts.append(f"{self.inference.describe()} ({self.inference_source})")
        parts.append(f"on {self.device}")
        return ", ".join(parts)

    def network_input(self, image: np.ndarray) -> np.ndarray:
        """The (3,h,w) float32 array the network sees for an HxWx3 uint8 RGB photo (`seglib.geometry`)."""
        return network_input(image, self.input_size, self.geometry, self.multiple)

    def input_sizes(self, height: int, width: int) -> tuple[int, ...]:
        """The input sizes an HxW photo is predicted at: the trained size or `inference.scales`, each capped so
        that the photo is magnified at most `inference.max_upscale` times (`seglib.predict.scales`)."""
        return photo_sizes(self.inference.scales or (self.input_size,), height, width, self.inference.max_upscale,
                           self.multiple)

    def network_probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The first pass: each photo's probabilities at its own size, averaged over its `input_sizes`."""
        return averaged_over_sizes(lambda batch: self.network(batch, self.tta), images,
                                   [self.input_sizes(*img.shape[:2]) for img in images], self.geometry, self.multiple)

    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for several HxWx3 uint8 RGB images, each at its own size: the first pass, then the second
        look and the refined edges where `inference` asks for them."""
        probs = self.network_probabilities(images)
        if self.inference.second_look:
            probs = second_look(self.network_probabilities, self.input_sizes, images, probs)
        if self.inference.refine:
            probs = [refine_probabilities(image, prob, self.threshold) for image, prob in zip(images, probs,
                                                                                             strict=True)]
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


def given_levers(kwargs: dict) -> dict:
    """Keyword arguments of a Predictor with `refine=` (the keyword before `inference`) folded into `inference`:
    a given refine is a given `InferenceOptions` (its other levers those given, else off)."""
    if "refine" in kwargs:
        refine = bool(kwargs.pop("refine"))
        kwargs["inference"] = replace(kwargs.get("inference") or InferenceOptions(), refine=refine)
    return kwargs


def _settle_tta(tta: bool | None, protocol: ValChoice | None) -> tuple[bool, str]:
    """(TTA on?, why): as given, else as chosen on val, else off."""
    if tta is not None:
        return bool(tta), "given"
    if protocol is not None and protocol.chosen_on_val:
        return protocol.tta, "as on val"
    return False, "default"

