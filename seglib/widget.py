"""The try-it widget (notebook 06): pick a photo or upload one, and see its mask, the overlay and the time taken.

`try_photo(predictor, source)` is the callback, usable and tested without a browser: an upload's bytes or a
path in, a `TryResult` out (mask, overlay, milliseconds and a one-line message; a file that is not an image
gives the message and no mask, never an exception). `TryIt(predictor, photos)` wires it to ipywidgets: a
dropdown of photos, an upload button, the overlay and the mask side by side, and the message line.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from PIL import Image

from seglib.errors import DataError
from seglib.predict import Predictor, load_input, overlay_mask
from seglib.viz.images import downscale

UPLOAD_NAME = "upload"  # an upload's name when the browser gives none
DISPLAY_WIDTH = "380px"  # of each image in the widget


@dataclass
class TryResult:
    """One photo through the model: the photo, its mask (uint8 0/1) and overlay at the photo's size, the time
    `predict_mask` took (decode excluded), and a one-line message; no arrays when the file was not an image."""

    name: str
    message: str
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    overlay: np.ndarray | None = None
    ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.mask is not None


def try_photo(predictor: Predictor, source: bytes | bytearray | memoryview | str | os.PathLike,
              name: str = "") -> TryResult:
    """Decode `source` (an upload's bytes, or a file's path) as viewers show it, predict its mask and time it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = Path(name).name or UPLOAD_NAME
        with tempfile.TemporaryDirectory(prefix="seglib-tryit-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(bytes(source))
            return _predict(predictor, path, name)
    path = Path(source)
    return _predict(predictor, path, name or path.name)


def _predict(predictor: Predictor, path: Path, name: str) -> TryResult:
    try:
        rgb, _ = load_input(path)
    except DataError as exc:  # not an image, empty, corrupt, too large: say so in the file's own name
        return TryResult(name, str(exc).replace(str(path), name))
    start = time.perf_counter()
    mask = predictor.predict_mask(rgb)
    ms = 1000 * (time.perf_counter() - start)
    h, w = rgb.shape[:2]
    how = f"threshold {predictor.threshold:g}{', flip TTA' if predictor.tta else ''}"
    message = f"{name}: {w}x{h}, person on {mask.mean():.0%} of the picture; {ms:.0f} ms ({how})"
    return TryResult(name, message, rgb, mask, overlay_mask(rgb, mask), ms)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB or grayscale uint8 array as PNG file bytes, downscaled for display."""
    buffer = io.BytesIO()
    Image.fromarray(downscale(image)).save(buffer, format="PNG")
    return buffer.getvalue()


class TryIt:
    """The widget: a dropdown of `photos` ({label: path}) and an upload button; each choice is run through
    `try_photo` and shown as the overlay and the mask with the message. `last` is the latest TryResult."""

    def __init__(self, predictor: Predictor, photos: Mapping[str, str | os.PathLike]):
        self.predictor = predictor
        self.last: TryResult | None = None
        self.choose = widgets.Dropdown(options=[("choose a photo", None)] + [(k, str(v)) for k, v in photos.items()],
                                       description="photo")
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="or upload one")
        self.overlay = widgets.Image(format="png", layout=widgets.Layout(width=DISPLAY_WIDTH))
        self.mask = widgets.Image(format="png", layout=widgets.Layout(width=DISPLAY_WIDTH))
        self.message = widgets.Label("choose a photo or upload one")
        self.choose.observe(self._chosen, names="value")
        self.upload.observe(self._uploaded, names="value")
        self.box = widgets.VBox([widgets.HBox([self.choose, self.upload]), widgets.HBox([self.overlay, self.mask]),
                                 self.message])

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def show(self, source, name: str = "") -> TryResult:
        """Run `try_photo` and show its result (the images are cleared for a file that is not an image)."""
        result = try_photo(self.predictor, source, name)
        self.last = result
        self.message.value = result.message
        self.overlay.value = png_bytes(result.overlay) if result.ok else b""
        self.mask.value = png_bytes(result.mask * 255) if result.ok else b""
        return result

    def _chosen(self, change) -> None:
        if change["new"]:
            self.show(change["new"])

    def _uploaded(self, change) -> None:
        if change["new"]:
            upload = change["new"][0]
            self.show(upload["content"], upload["name"])
