"""Prediction on any photo: letterbox -> model -> probabilities mapped back to the photo's exact size.

Python API (the notebooks use it too):

- `Predictor`: a trained model plus its input size, normalisation and threshold
  (`Predictor.from_run(name)`, `Predictor.from_checkpoint(path)`; `predict_proba`, `predict_mask`).
- `collect_inputs(paths)`: the image files named by files and folders.
- `load_input(path)`: decode any JPEG/PNG to RGB as viewers show it; returns the EXIF orientation applied.
- `predict_files(predictor, inputs, out_dir)`: one `<stem>.mask.png` (0/255) per input at the input's exact
  size, optional `<stem>.overlay.jpg`; bad files are reported and skipped -> `PredictReport`.
- `overlay_mask(rgb, mask)`: the photo with the mask tinted green and outlined.

Command line: `seglib predict (--run NAME | --checkpoint PATH) INPUT... --out DIR` (see `add_parser`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.config import IMAGE_SUFFIXES, display_path, user_path
from seglib.devices import resolve_device
from seglib.errors import DataError, SeglibError
from seglib.export import load_onnx
from seglib.io import atomic_path, check_writable_dir, load_rgb, save_png_atomic
from seglib.runs import Run
from seglib.settings import config_from_dict, input_multiple
from seglib.transforms import eval_transform, to_photo

MASK_SUFFIX = ".mask.png"
OVERLAY_SUFFIX = ".overlay.jpg"
OVERLAY_COLOR = (0, 255, 0)
OVERLAY_ALPHA = 0.45
EXIF_ORIENTATION_TAG = 0x0112


class Predictor:
    """A trained model plus what it needs to predict: input size, normalisation, threshold.

    `predict_proba(rgb)` returns foreground probabilities at the input's own HxW. With `tta` the
    probabilities are the average of the plain and the horizontally flipped prediction.
    `threshold_source` says where the threshold came from (given, chosen on val, stored in the checkpoint).
    """

    def __init__(self, model: torch.nn.Module, cfg, checkpoint: dict, *, device: str | torch.device = "cpu",
                 threshold: float | None = None, tta: bool = False, source: str = "",
                 threshold_source: str | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.threshold = float(threshold if threshold is not None else checkpoint["threshold"])
        if not 0.0 < self.threshold < 1.0:  # a stored one is checked on load (seglib.schema); this is a given one
            raise SeglibError(f"threshold {self.threshold:g}: a probability threshold must be between 0 and 1")
        self.threshold_source = threshold_source or ("given" if threshold is not None else "stored in the checkpoint")
        self.tta = tta
        self.source = source
        self.geometry = getattr(cfg, "geometry", "letterbox")
        self.set_input_size(checkpoint["input_size"])

    def set_input_size(self, size: int) -> None:
        """Run the network at another square input size than it was trained at (fully convolutional networks;
        an ONNX file exported with dynamic height and width): fewer pixels, faster, usually less accurate."""
        self.input_size = int(size)
        self.transform = eval_transform(self.input_size, geometry=self.geometry, multiple=input_multiple(self.cfg))

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Predictor:
        state = load_checkpoint(path)
        model, cfg = model_from_checkpoint(state)
        return cls(model, cfg, state, source=display_path(path), **kwargs)

    @classmethod
    def from_run(cls, run: str | Path | Run, which: str = "best", **kwargs) -> Predictor:
        """Load a run's best checkpoint (its last one with which="last"; a name means runs/NAME); the threshold
        chosen on val for this very checkpoint (eval/val/metrics.json) is used when present and no threshold is
        given."""
        run = Run.resolve(run)
        predictor = cls.from_checkpoint(run.require(which), **kwargs)
        if kwargs.get("threshold") is None:
            chosen = run.val_threshold(predictor.checkpoint.get("epoch"), predictor.tta, which)
            if chosen is not None:
                predictor.threshold, predictor.threshold_source = chosen
        return predictor

    @classmethod
    def from_onnx(cls, path: str | Path, *, threads: int | None = None, **kwargs) -> Predictor:
        """A Predictor running a model exported by `seglib export` in ONNX Runtime (same letterbox, threshold
        and TTA as the PyTorch path). Its metadata is checked on load like a checkpoint (`seglib.schema`):
        threshold, input size, config and a normalisation equal to the one the PyTorch path feeds."""
        model, checkpoint = load_onnx(path, threads=threads)
        return cls(model, config_from_dict(checkpoint["config"]), checkpoint, source=display_path(path), **kwargs)

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
        if self.tta:
            parts.append("flip TTA")
        parts.append(f"on {self.device}")
        return ", ".join(parts)

    @torch.inference_mode()
    def predict_proba_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for several HxWx3 uint8 RGB images, each at its own size."""
        inputs = [self.transform(image=img)["image"] for img in images]
        probs: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple, list[int]] = {}
        for i, tensor in enumerate(inputs):  # one shape per square geometry; rect inputs differ by aspect
            by_shape.setdefault(tuple(tensor.shape), []).append(i)
        for group in by_shape.values():
            for i, prob in zip(group, self._probabilities(torch.stack([inputs[i] for i in group])), strict=True):
                probs[i] = to_photo(prob, images[i].shape[0], images[i].shape[1], self.geometry)
        return probs

    def _probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Foreground probabilities (N,H,W) of a batch of network inputs, flip TTA averaged in when on."""
        batch = batch.to(self.device)
        probs = torch.sigmoid(self.model(batch))
        if self.tta:
            flipped = torch.sigmoid(self.model(torch.flip(batch, dims=[3])))
            probs = 0.5 * (probs + torch.flip(flipped, dims=[3]))
        return probs[:, 0].float().cpu().numpy()

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.predict_proba_batch([image])[0]

    def predict_mask(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Binary mask (uint8 0/1) at the image's own size."""
        t = self.threshold if threshold is None else threshold
        return (self.predict_proba(image) >= t).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ inputs


def collect_inputs(paths, *, warn=None) -> list[Path]:
    """The image files named by `paths`, in the order given, each file once.

    A file is taken as given, whatever its extension (a bad one is reported when it is decoded). A folder
    contributes its image files (IMAGE_SUFFIXES, any letter case), sorted by name; it is NOT searched
    recursively, and hidden files (".name") and this command's own outputs (`*.mask.png`,
    `*.overlay.*`) are left out, the latter with a note saying how many (passed to `warn`). A path that does
    not exist is kept, so that it is reported as a failed input (not a crash). A folder with no images gets
    a note too; no inputs at all is a SeglibError.
    """
    warn = warn or (lambda msg: None)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for raw in paths:
        p = user_path(raw)
        if p.is_dir():
            children = list(p.iterdir())
            images = sorted((c for c in children if _is_candidate(c)), key=lambda c: c.name)
            outputs = sum(1 for c in children if _is_own_output(c))
            if outputs:
                warn(f"seglib: note: {p}: left out {outputs} file{'s' if outputs != 1 else ''} named "
                     f"*{MASK_SUFFIX} or *.overlay.* (predict's own outputs); name a file to predict it anyway")
            if not images:
                warn(f"seglib: note: {p}: no image files ({'/'.join(IMAGE_SUFFIXES)}) in this folder "
                     "(subfolders are not searched)")
            for c in images:
                add(c)
        else:
            add(p)
    if not found:
        raise SeglibError("no input images (give image files or folders that contain them)")
    return found


def _is_candidate(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or not path.is_file() or _is_own_output(path):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_own_output(path: Path) -> bool:
    """A mask or overlay this command writes (left out of folder scans, so a second run does not predict them)."""
    name = path.name.lower()
    return (not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
            and (name.endswith(MASK_SUFFIX) or ".overlay." in name))


def exif_orientation(path: str | Path) -> int:
    """The EXIF (or XMP) orientation tag of an image file, 1 when absent or unreadable (header only)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - the image itself decoded; an odd EXIF block only means "no rotation"
        return 1


def load_input(path: str | Path) -> tuple[np.ndarray, int]:
    """(HxWx3 uint8 RGB as viewers show it, EXIF orientation applied: 1 = none); DataError when unreadable.
    An animated image (GIF, WebP, multi-page TIFF) gives its first frame (`frame_count` tells)."""
    rgb = load_rgb(path, exif_transpose=True)
    return rgb, exif_orientation(path)


def frame_count(path: str | Path) -> int:
    """Number of frames (pages) in an image file; 1 for a still image or an unreadable header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - the image itself decoded; an odd header only means "one frame"
        return 1


def plan_outputs(inputs: list[Path], out_dir: str | Path, *, overlay: bool = False
                 ) -> list[tuple[Path, Path, Path | None]]:
    """(input, mask path, overlay path or None) per input. Inputs sharing a stem (photo.jpg in two folders,
    or photo.jpg and photo.png) get `photo`, `photo-2`, `photo-3`, ... in input order (case-insensitively
    distinct, for case-insensitive file systems)."""
    out_dir = Path(out_dir)
    used: set[str] = set()
    plan = []
    for path in inputs:
        stem = path.stem or "image"
        name, n = stem, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name.lower())
        plan.append((path, out_dir / f"{name}{MASK_SUFFIX}", out_dir / f"{name}{OVERLAY_SUFFIX}" if overlay else None))
    return plan


# ----------------------------------------------------------------------------------------------- outputs


def refuse_existing(plan: list[tuple[Path, Path, Path | None]]) -> None:
    """SeglibError naming the first planned output that already exists (outputs are never silently replaced)."""
    existing = [p for _, mask, ov in plan for p in (mask, ov) if p is not None and p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SeglibError(f"{existing[0]} already exists{more}; refusing to overwrite (pass --overwrite "
                          "to replace, or choose another --out)")


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, color=OVERLAY_COLOR, alpha: float = OVERLAY_ALPHA,
                 outline: bool = True, thickness: int | None = None) -> np.ndarray:
    """The photo with the mask tinted (green, 45 %) and its edge drawn solid; other pixels unchanged.

    `rgb`: HxWx3 uint8; `mask`: HxW bool, 0/1 or 0/255. The outline grows with the image (about 1 px per
    500 px of the longest side, unless `thickness` is given) so it stays visible on large photos. The one
    overlay of the workbook: the notebooks' figures (`viz.overlay`) use it too.
    """
    image = np.asarray(rgb)
    m = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    if m.shape != image.shape[:2]:
        raise ValueError(f"mask shape {m.shape} does not match image shape {image.shape[:2]}")
    m = m > (127 if m.dtype != bool and m.size and m.max() > 1 else 0)
    out = image.copy()
    if m.any():
        col = np.asarray(color, np.float32)
        out[m] = np.clip(image[m].astype(np.float32) * (1 - alpha) + col * alpha + 0.5, 0, 255).astype(np.uint8)
        if outline:
            thickness = thickness or max(1, round(max(m.shape) / 500))
            inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=thickness,
                              borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
            out[m & ~inner] = np.asarray(color, np.uint8)
    return out


def save_jpeg_atomic(path: str | Path, array: np.ndarray, quality: int = 90) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=quality)


@dataclass
class PredictReport:
    """What `predict_files` did: masks written, inputs that failed (with the reason), EXIF-rotated inputs."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)  # mask files, in input order
    overlays: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line problem)
    exif_rotated: list[Path] = field(default_factory=list)  # inputs whose EXIF orientation was applied
    outputs: dict[Path, Path] = field(default_factory=dict)  # input -> mask file
    planned: int = 0  # inputs the batch was given

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        what = f"{len(self.written)} mask{'s' if len(self.written) != 1 else ''}"
        if self.overlays:
            what += f" and {len(self.overlays)} overlay{'s' if len(self.overlays) != 1 else ''}"
        return f"wrote {what} to {self.out_dir}; {len(self.failed)} failed"

    def interrupted_summary(self, signal_name: str = "SIGINT") -> str:
        """What an interrupted batch left: how many masks, where, and that each file is complete."""
        done = len(self.written)
        if not done:
            return f"predict stopped by {signal_name} before writing any of {self.planned} masks; nothing written"
        left = self.planned - done - len(self.failed)
        return (f"predict stopped by {signal_name} after writing {done} of {self.planned} masks to {self.out_dir}; "
                f"each file written is complete, {left} not written; run again with --overwrite to redo them all, "
                "or with another --out")


def predict_files(predictor: Predictor, inputs, out_dir: str | Path, *, overlay: bool = False,
                  progress: bool = True, overwrite: bool = False, threshold: float | None = None,
                  log: Callable[[str, bool], None] | None = None) -> PredictReport:
    """Predict a mask for every input and write `<stem>.mask.png` (0/255, the input's exact size as viewers
    show it) into `out_dir`, plus `<stem>.overlay.jpg` with `overlay`.

    `inputs`: files and/or folders (see `collect_inputs`). Existing outputs are refused up front (SeglibError,
    nothing written) unless `overwrite`. An input that cannot be decoded (missing, empty, corrupt,
    truncated, not an image, too large) is recorded in the report (and passed to `log(line, is_error)` as
    `seglib: skipped <path>: <problem>`) and the batch goes on. Files are written atomically (never half-written).
    An interrupt (KeyboardInterrupt, which SIGTERM/SIGHUP raise too) propagates with the report so far attached
    as `exc.predict_report` (`PredictReport.interrupted_summary` says what was left).
    """
    from tqdm.auto import tqdm

    paths = collect_inputs(inputs)
    out_dir = check_writable_dir(out_dir)  # created by the first mask written
    plan = plan_outputs(paths, out_dir, overlay=overlay)
    if not overwrite:
        refuse_existing(plan)
    report = PredictReport(out_dir=out_dir, planned=len(plan))
    bar = tqdm(plan, desc="predict", unit="img", disable=not progress or len(plan) < 2, file=sys.stderr)

    def say(msg: str, err: bool = False) -> None:
        if log is not None:
            log(msg, err)

    try:
        for path, mask_path, overlay_path in bar:
            _predict_one(predictor, report, path, mask_path, overlay_path, threshold, say)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (seglib.signals): the files written so far are
        exc.predict_report = report  # whole (atomic writes); the caller says how many
        raise
    finally:
        bar.close()
    return report


def _predict_one(predictor: Predictor, report: PredictReport, path: Path, mask_path: Path,
                 overlay_path: Path | None, threshold: float | None, say: Callable[..., None]) -> None:
    """Predict and write one input's mask (and overlay), recording the outcome in `report`."""
    try:
        rgb, orientation = load_input(path)
    except DataError as exc:
        report.failed.append((path, _problem(exc, path)))
        say(f"seglib: skipped {path}: {_problem(exc, path)}", err=True)
        return
    mask = predictor.predict_mask(rgb, threshold=threshold)
    frames = frame_count(path)
    if frames > 1:
        say(f"{path}: {frames} frames (animated or multi-page); the mask is for the first frame")
    try:
        save_png_atomic(mask_path, (mask * 255).astype(np.uint8))
    except OSError as exc:
        _write_failed(report, path, exc, say)
        return
    report.written.append(mask_path)  # at once: an interrupt while the overlay is written still counts this mask
    report.outputs[path] = mask_path
    if overlay_path is not None:
        try:
            save_jpeg_atomic(overlay_path, overlay_mask(rgb, mask))
        except OSError as exc:
            _write_failed(report, path, exc, say)
            return
        report.overlays.append(overlay_path)
    if orientation != 1:
        report.exif_rotated.append(path)
        h, w = rgb.shape[:2]
        stored = f"{h}x{w}" if orientation >= 5 else f"{w}x{h}"
        say(f"{path}: EXIF orientation {orientation} applied; mask matches the photo as viewers show it "
            f"({w}x{h}; stored {stored})")


def _write_failed(report: PredictReport, path: Path, exc: OSError, say: Callable[..., None]) -> None:
    report.failed.append((path, f"could not write output ({exc.strerror or exc})"))
    say(f"seglib: skipped {path}: could not write output ({exc.strerror or exc})", err=True)


def _problem(exc: Exception, path: Path) -> str:
    """The error message without its leading '<path>: ' (the skip line names the path already)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


