"""What a predicted figure is used for: the overlay, a cut-out with a soft edge, the background replaced.

- `figure_alpha(rgb, prob, threshold, refine=...)`: an alpha matte (uint8 0-255) from the probabilities: 0 on
  the background, 255 inside the figure, a soft ramp where the probability is near the threshold; with
  `refine`, the ramp is fitted to the photo's own edges by a guided filter (He, Sun and Tang, ECCV 2010).
- `refine_probabilities(rgb, prob, threshold)`: boundary refinement of the probabilities themselves (the
  masks follow the photo's edges), what `Predictor(refine=True)`, `predict --refine` and `evaluate --refine` use.
- `cutout_rgba(rgb, alpha)`: the photo with that alpha (an RGBA PNG's pixels).
- `parse_background(spec)` and `composite(rgb, alpha, background)`: the figure on a blurred copy of its own
  background, on a colour, or on another image.
- `overlay_mask(rgb, mask)`: the photo with the mask tinted green and outlined (the notebooks' figures too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import atomic_path, load_rgb

OVERLAY_COLOR = (0, 255, 0)
OVERLAY_ALPHA = 0.45
EDGE_SOFTNESS = 0.1  # probabilities within this distance of the threshold get a partial alpha
KEY_COLOR = (0, 177, 64)  # chroma-key green: what a video's cut-out stands on (video has no alpha here)
NAMED_COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
                "green": KEY_COLOR, "blue": (0, 71, 187), "red": (200, 30, 30)}
GUIDED_EPS = 1e-3  # the guided filter's regularisation: how strong an edge of the photo must be to be followed
BLUR_FRACTION = 1 / 40  # the background blur's sigma, as a fraction of the photo's longest side


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


def soft_alpha(prob: np.ndarray, threshold: float, softness: float = EDGE_SOFTNESS) -> np.ndarray:
    """HxW float32 in [0, 1]: 0 where prob <= threshold - softness, 1 where prob >= threshold + softness,
    linear between (so the hard mask is alpha >= 0.5)."""
    lo, hi = max(threshold - softness, 0.0), min(threshold + softness, 1.0)
    return np.clip((np.asarray(prob, np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide: `src` (HxW float) smoothed so that its edges follow the
    guide's (HxWx3 uint8). Written here in five box filters: OpenCV's own (ximgproc) is only in the contrib
    build, which would replace the opencv package the project pins."""
    grey = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    p = src.astype(np.float32)
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(grey), box(p)
    var_i = box(grey * grey) - mean_i * mean_i
    a = (box(grey * p) - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * grey + box(b)


def figure_alpha(rgb: np.ndarray, prob: np.ndarray, threshold: float, *, refine: bool = False) -> np.ndarray:
    """An alpha matte (HxW uint8) for the figure: 0 on the background, 255 inside, soft near the threshold.
    With `refine`, pixels within a few pixels of the mask's edge take the guided filter's alpha instead, so
    hair and limbs follow the photo; the inside and the far background stay 255 and 0."""
    alpha = soft_alpha(prob, threshold)
    if refine:
        alpha = fitted_to_photo(rgb, alpha, 0.5)
    return np.round(alpha * 255).astype(np.uint8)


def refine_probabilities(rgb: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """Boundary refinement at the photo's own resolution: the probabilities near the mask's edge (where they
    cross `threshold`) fitted to the photo's edges by a guided filter; elsewhere unchanged."""
    return fitted_to_photo(rgb, np.asarray(prob, np.float32), threshold)


def fitted_to_photo(rgb: np.ndarray, values: np.ndarray, level: float) -> np.ndarray:
    """`values` (HxW in [0, 1]) with the band of a few pixels around their `level` contour replaced by the guided
    filter's output (guide: the photo); the band's width grows with the photo."""
    h, w = values.shape
    radius = max(2, round(max(h, w) / 160))
    hard = (values >= level).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    band = cv2.dilate(hard, kernel) != cv2.erode(hard, kernel)
    fitted = np.clip(guided_filter(rgb, values, radius, GUIDED_EPS), 0.0, 1.0)
    return np.where(band, fitted, values).astype(np.float32)


def cutout_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """HxWx4 uint8: the photo's colours with `alpha` (HxW uint8) as the fourth channel."""
    return np.dstack([np.asarray(rgb, np.uint8), np.asarray(alpha, np.uint8)])


@dataclass(frozen=True)
class Background:
    """What replaces a photo's background: `blur` (its own background, blurred), a `color`, or an `image`."""

    kind: str
    color: tuple[int, int, int] | None = None
    image: np.ndarray | None = None
    source: str = ""

    def canvas(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The new background at the photo's size (HxWx3 uint8)."""
        h, w = rgb.shape[:2]
        if self.kind == "color":
            return np.broadcast_to(np.asarray(self.color, np.uint8), (h, w, 3))
        if self.kind == "image":
            return cover(self.image, h, w)
        return blurred_background(rgb, alpha)

    def describe(self) -> str:
        return {"blur": "blurred", "color": f"colour {self.source}", "image": f"image {self.source}"}[self.kind]


KEY_BACKGROUND = Background("color", color=KEY_COLOR, source="chroma-key green")


def parse_background(spec: str) -> Background:
    """`blur`, a colour (`white`, `#RRGGBB`, `R,G,B`) or an image file; a bad one is a SeglibError (a colour)
    or a DataError naming the file (an image that does not exist or cannot be decoded)."""
    text = str(spec).strip()
    if text.lower() == "blur":
        return Background("blur", source="blur")
    color = parse_color(text)
    if color is not None:
        return Background("color", color=color, source=text)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: background image not found (or give blur, a colour name, #RRGGBB or R,G,B)")
    if path.is_dir():
        raise DataError(f"{path}: background is a folder; give an image file, blur or a colour")
    return Background("image", image=load_rgb(path), source=str(path))


def parse_color(text: str) -> tuple[int, int, int] | None:
    """(R, G, B) for a colour name, #RRGGBB or R,G,B; None when `text` is none of these; SeglibError when it
    looks like a colour but is out of range."""
    lowered = text.lower()
    if lowered in NAMED_COLORS:
        return NAMED_COLORS[lowered]
    if lowered.startswith("#") and len(lowered) == 7:
        try:
            return tuple(int(lowered[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            raise SeglibError(f"colour {text!r}: expected #RRGGBB with hexadecimal digits") from None
    parts = text.split(",")
    if len(parts) == 3 and all(p.strip().lstrip("-").isdigit() for p in parts):
        values = tuple(int(p) for p in parts)
        if not all(0 <= v <= 255 for v in values):
            raise SeglibError(f"colour {text!r}: each of R,G,B must be 0-255")
        return values  # type: ignore[return-value]
    return None


def cover(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """`image` scaled to cover HxW (aspect kept) and centre-cropped to it."""
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    sh, sw = max(h, round(ih * scale)), max(w, round(iw * scale))
    resized = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (sh - h) // 2, (sw - w) // 2
    return resized[top:top + h, left:left + w]


def blurred_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The photo's background blurred with the figure left out (a normalised convolution), so the figure's
    colours do not bleed into a halo around it; where only figure is near, the plain blur fills in."""
    sigma = max(2.0, max(rgb.shape[:2]) * BLUR_FRACTION)
    weight = 1.0 - alpha.astype(np.float32) / 255.0
    blurred = cv2.GaussianBlur(rgb.astype(np.float32) * weight[..., None], (0, 0), sigma)
    norm = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    plain = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma)
    out = np.where(norm > 1e-3, blurred / np.maximum(norm, 1e-3), plain)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def composite(rgb: np.ndarray, alpha: np.ndarray, background: Background) -> np.ndarray:
    """The figure (where `alpha` is 255) on `background` (where it is 0), blended between."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    canvas = background.canvas(rgb, alpha).astype(np.float32)
    return np.clip(rgb.astype(np.float32) * a + canvas * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def draw_outputs(kinds, rgb: np.ndarray, prob: np.ndarray, threshold: float, *, background: Background | None = None,
                 refine: bool = False, transparent: bool = True) -> dict[str, np.ndarray]:
    """The pictures of the outputs `kinds` asks for (mask: HxW 0/255; overlay; cutout: RGBA, or on chroma-key
    green when not `transparent`, as a video needs; background), the mask and the alpha matte made once."""
    mask = prob >= threshold
    alpha = figure_alpha(rgb, prob, threshold, refine=refine) if {"cutout", "background"} & set(kinds) else None
    pictures = {}
    for kind in kinds:
        if kind == "mask":
            pictures[kind] = (mask * 255).astype(np.uint8)
        elif kind == "overlay":
            pictures[kind] = overlay_mask(rgb, mask)
        elif kind == "cutout":
            pictures[kind] = cutout_rgba(rgb, alpha) if transparent else composite(rgb, alpha, KEY_BACKGROUND)
        else:
            pictures[kind] = composite(rgb, alpha, background)
    return pictures


def save_jpeg_atomic(path: str | Path, array: np.ndarray, quality: int = 90) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=quality)
