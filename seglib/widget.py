"""The try-it widget (notebook 06): pick a photo or upload one, and see its mask, the overlay, the cut-out, the
background replaced, and the time taken.

`try_photo(predictor, source)` is the callback, usable and tested without a browser: an upload's bytes or a
path in, a `TryResult` out (mask, overlay, cut-out, composite, milliseconds and a one-line message; a file that
is not an image gives the message and no mask, never an exception). `TryIt(predictor, photos)` wires it to
ipywidgets: a dropdown of photos, an upload button, what to show on the left (overlay, cut-out or the
background replaced), the mask on the right, and the message line.
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

from seglib.infra.errors import DataError
from seglib.infra.paths import IMAGE_SUFFIXES
from seglib.predict import Predictor, load_input
from seglib.predict.outputs import draw_outputs, parse_background
from seglib.viz.images import downscale

UPLOAD_NAME = "upload"  # an upload's name when the browser gives none
# What the file picker offers: any image type, and by suffix what a browser may not file under image/* (HEIC)
UPLOAD_ACCEPT = ",".join(("image/*", *IMAGE_SUFFIXES))
DISPLAY_WIDTH = "380px"  # of each image in the widget
VIEWS = ("overlay", "cut-out", "new background")  # what the widget's left image shows
BACKGROUNDS = ("blur", "white", "green", "black")  # the backgrounds it offers


@dataclass
class TryResult:
    """One photo through the model: the photo, its mask (uint8 0/1), overlay, cut-out (RGBA) and composite on
    `background` at the photo's size, the time the prediction took (decode excluded), and a one-line message; no
    arrays when the file was not an image."""

    name: str
    message: str
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    overlay: np.ndarray | None = None
    ms: float | None = None
    cutout: np.ndarray | None = None
    composite: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.mask is not None


def try_photo(predictor: Predictor, source: bytes | bytearray | memoryview | str | os.PathLike,
              name: str = "", background: str = "blur") -> TryResult:
    """Decode `source` (an upload's bytes, or a file's path) as viewers show it, predict its mask and time it;
    `background` is what the composite puts behind the figure (blur, a colour or an image file)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = Path(name).name or UPLOAD_NAME
        with tempfile.TemporaryDirectory(prefix="seglib-tryit-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(bytes(source))
            return _predict(predictor, path, name, background)
    path = Path(source)
    return _predict(predictor, path, name or path.name, background)


def _predict(predictor: Predictor, path: Path, name: str, background: str) -> TryResult:
    try:
        rgb, _ = load_input(path)
    except DataError as exc:  # not an image, empty, corrupt, too large: say so in the file's own name
        return TryResult(name, str(exc).replace(str(path), name))
    start = time.perf_counter()
    prob = predictor.predict_proba(rgb)
    ms = 1000 * (time.perf_counter() - start)
    shown = draw_outputs(("mask", "overlay", "cutout", "background"), rgb, prob, predictor.threshold,
                         background=parse_background(background))
    mask = (shown["mask"] > 0).astype(np.uint8)
    h, w = rgb.shape[:2]
    how = f"threshold {predictor.threshold:g}{', flip TTA' if predictor.tta else ''}"
    message = f"{name}: {w}x{h}, person on {mask.mean():.0%} of the picture; {ms:.0f} ms ({how})"
    return TryResult(name, message, rgb, mask, shown["overlay"], ms, shown["cutout"], shown["background"])


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB, RGBA or grayscale uint8 array as PNG file bytes, downscaled for display."""
    buffer = io.BytesIO()
    Image.fromarray(downscale(image)).save(buffer, format="PNG")
    return buffer.getvalue()


class TryIt:
    """The widget: a dropdown of `photos` ({label: path}) and an upload button; each choice is run through
    `try_photo` and shown as the overlay and the mask with the message. `last` is the latest TryResult."""

    def __init__(self, predictor: Predictor, photos: Mapping[str, str | os.PathLike]):
        self.predictor = predictor
        self.last: TryResult | None = None
        self.choose = widgets.Dropdown(options=[("choose a photo", "")] + [(k, str(v)) for k, v in photos.items()],
                                       value="", description="photo")  # "" shows the prompt (None would be blank)
        self.upload = widgets.FileUpload(accept=UPLOAD_ACCEPT, multiple=False, description="or upload one")
        self.view = widgets.ToggleButtons(options=VIEWS, value="overlay", description="show")
        self.background = widgets.Dropdown(options=BACKGROUNDS, value="blur", description="background")
        self.overlay = widgets.Image(format="png", layout=widgets.Layout(width=DISPLAY_WIDTH))
        self.mask = widgets.Image(format="png", layout=widgets.Layout(width=DISPLAY_WIDTH))
        self.message = widgets.Label("choose a photo or upload one")
        self.overlay.add_class("seglib-view")
        self.mask.add_class("seglib-mask")
        self.message.add_class("seglib-message")
        self.upload.add_class("seglib-upload")
        self.choose.observe(self._chosen, names="value")
        self.upload.observe(self._uploaded, names="value")
        self.view.observe(lambda _: self._draw(), names="value")
        self.background.observe(self._background_changed, names="value")
        self._source: tuple | None = None
        self.box = widgets.VBox([widgets.HBox([self.choose, self.upload]), widgets.HBox([self.view, self.background]),
                                 widgets.HBox([self.overlay, self.mask]), self.message])
        self.box.add_class("seglib-tryit")  # the classes name the parts for a browser test (tests/test_browser.py)

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def show(self, source, name: str = "") -> TryResult:
        """Run `try_photo` and show its result (the images are cleared for a file that is not an image)."""
        result = try_photo(self.predictor, source, name, self.background.value)
        self.last, self._source = result, (source, name)
        self.message.value = result.message
        self._draw()
        return result

    def _draw(self) -> None:
        """Show the last result: the chosen view on the left, the mask on the right."""
        result = self.last
        if result is None:
            return
        left = {"overlay": result.overlay, "cut-out": result.cutout, "new background": result.composite}
        self.overlay.value = png_bytes(left[self.view.value]) if result.ok else b""
        self.mask.value = png_bytes(result.mask * 255) if result.ok else b""

    def _background_changed(self, _change) -> None:
        if self._source is not None:
            self.view.value = "new background"
            self.show(*self._source)

    def _chosen(self, change) -> None:
        if change["new"]:
            self.show(change["new"])

    def _uploaded(self, change) -> None:
        if change["new"]:
            upload = change["new"][0]
            self.show(upload["content"], upload["name"])
