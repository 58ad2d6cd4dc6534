"""How a data set's stored mask values become person (1) and background (0): one rule per set.

`binary` (0/255 or 0/1, as in the built-in set; anything else is refused), `nonzero` (any value > 0: instance ids
such as Penn-Fudan's), `==V` (the value V), `in:V1,V2,...` (any of those values: the classes that mean person in a
class-index mask), `rgb:R,G,B` (that colour in a colour mask) and `alpha` (person = alpha above 127: a cut-out
export whose transparency marks the background, whatever its colours), and `parsing` (a human parser's class map,
Look-Into-Person classes: person = any class > 0, with the neck gap of parsers that leave the neck as background
filled; see `fill_neck_gap`).

A mask with transparency (an alpha channel, or a palette with transparent entries) whose pixels are not all opaque
is read by the `alpha` rule only: every other rule refuses it, since its colours alone may say nothing (a cut-out is
often white everywhere, the person only in its alpha).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from seglib.infra.errors import DataError
from seglib.infra.io import load_mask_raw, open_image

PARSING = "parsing"  # a human parser's class map: person = class > 0, the neck gap below the face filled
RULE_HELP = ("binary (0/255 or 0/1), nonzero (any value > 0, e.g. instance ids), ==V (the value V), "
             "in:V1,V2 (any of those values), rgb:R,G,B (that colour in a colour mask), alpha (person = alpha "
             f"above 127, a cut-out's transparency), {PARSING} (a human parser's class map, person = class > 0 with "
             "the neck gap below the face filled)")
FACE_CLASS = 13  # the Look-Into-Person class of the face
NECK_GAP_MAX = 0.15  # parsing: the longest background run filled below the face, as a fraction of the mask height
CHIN_BAND = 0.03  # parsing: columns whose lowest face pixel lies this far (fraction of the height) above the chin
ALPHA_THRESHOLD = 127  # the alpha rule: person where alpha > ALPHA_THRESHOLD
# A pinhole: a speck of background enclosed by the figure, or a speck of figure alone in the background, of at most
# this many pixels (4-connected). The built-in set's masks hold thousands, mostly 1-9 px, in dark hair and clothes.
PINHOLE_MAX_PX = 16
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_VALUES = re.compile(r"\d{1,5}(,\d{1,5})*")


@dataclass(frozen=True)
class MaskRule:
    """A parsed rule (`MaskRule.parse("in:1,2")`); `read(path)` gives the 0/1 person mask of a file."""

    text: str
    kind: str  # binary | nonzero | values | colour | alpha | parsing
    values: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> MaskRule:
        text = str(text).strip()
        if text in ("binary", "nonzero", "alpha", PARSING):
            return cls(text, text)
        for prefix, kind in (("==", "values"), ("in:", "values"), ("rgb:", "colour")):
            body = text[len(prefix):]
            if text.startswith(prefix) and _VALUES.fullmatch(body):
                values = tuple(int(v) for v in body.split(","))
                if (prefix == "==" and len(values) != 1) or (kind == "colour" and len(values) != 3):
                    break
                return cls(text, kind, values)
        raise DataError(f"mask rule {text!r}: expected {RULE_HELP}")

    def read(self, path: str | Path) -> np.ndarray:
        """The person mask (uint8 0/1) of the mask file at `path`, or a DataError naming it."""
        # 1. transparency: the alpha rule's pixels, and what every other rule refuses
        alpha = alpha_channel(path)
        if self.kind == "alpha":
            if alpha is None:
                raise DataError(f"{path}: the mask rule alpha reads transparency, and this mask has no alpha channel; "
                                "give the rule its values follow (--mask-rule binary, nonzero, ==V, in:V1,V2 or "
                                "rgb:R,G,B)")
            return (alpha > ALPHA_THRESHOLD).astype(np.uint8)
        if alpha is not None and (alpha != 255).any():
            raise DataError(f"{path}: mask has transparency ({(alpha != 255).mean():.0%} of its pixels not opaque): "
                            f"the person may be in its alpha channel, which the rule {self.text} does not read; give "
                            f"--mask-rule alpha (person = alpha above {ALPHA_THRESHOLD}), or save the masks opaque")
        # 2. the stored values, by the rule
        if self.kind == "colour":
            rgb = np.asarray(open_image(path).convert("RGB"), dtype=np.uint8)
            return (rgb == np.array(self.values, dtype=np.uint8)).all(axis=2).astype(np.uint8)
        if self.kind == PARSING:
            return fill_neck_gap(class_map(path))
        raw = load_mask_raw(path)
        if self.kind == "nonzero":
            return (raw > 0).astype(np.uint8)
        if self.kind == "values":
            return np.isin(raw, self.values).astype(np.uint8)
        values = set(np.unique(raw).tolist())
        if not (values <= {0, 255} or values <= {0, 1}):
            shown = sorted(v for v in values if v not in (0, 1, 255))[:3]
            raise DataError(f"{path}: mask is not binary ({len(values)} distinct values, e.g. {shown}); give a "
                            "mask rule (--mask-rule nonzero, ==V or in:V1,V2)")
        return (raw > (127 if raw.max() > 1 else 0)).astype(np.uint8)


def alpha_channel(path: str | Path) -> np.ndarray | None:
    """The alpha (uint8) of a mask file with transparency (an alpha channel, or a palette with transparent
    entries), else None; a file that cannot be read is None too (reading its values names the problem)."""
    path = Path(path)
    if not path.is_file():  # a folder, a FIFO (opening one would wait), a missing file
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as probe:  # the header only
                transparent = probe.mode in _ALPHA_MODES or (probe.mode == "P" and "transparency" in probe.info)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if not transparent:
        return None
    return np.asarray(open_image(path).convert("RGBA").getchannel("A"), dtype=np.uint8)


def class_map(path: str | Path) -> np.ndarray:
    """The class index of each pixel of a label map: a palette image's indices (not its colours), a grey one's
    values."""
    img = open_image(path)
    if img.mode == "P":
        return np.asarray(img, dtype=np.uint8).copy()
    return load_mask_raw(path)


def fill_neck_gap(classes: np.ndarray) -> np.ndarray:
    """Person (uint8 0/1) of a parser's class map: every class > 0, and the neck a parser left as background.

    Some parsers' maps (VITON's original ones) have no neck class: between the face and the clothes lies a band
    of background. In each column whose lowest face pixel (FACE_CLASS) lies within CHIN_BAND of the face's lowest
    row (the chin, not the jaw's sides), the background run just below the face becomes person when a person pixel
    ends it within NECK_GAP_MAX of the height. A map whose neck is labelled (a skin class) has no such run there:
    the rule leaves it as `class > 0`."""
    person = classes > 0
    face = classes == FACE_CLASS
    if not face.any():
        return person.astype(np.uint8)
    height = classes.shape[0]
    rows = np.arange(height)[:, None]
    lowest = np.where(face, rows, -1).max(axis=0)  # per column: the lowest face row (-1: no face)
    chin = int(lowest.max())
    columns = np.nonzero((lowest >= 0) & (lowest >= chin - CHIN_BAND * height))[0]
    out = person.copy()
    for column in columns:
        start = lowest[column] + 1
        below = np.nonzero(person[start:, column])[0]
        if len(below) and 0 < below[0] <= NECK_GAP_MAX * height:
            out[start:start + below[0], column] = True
    return out.astype(np.uint8)


def pinholes(person: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(background specks enclosed by the figure, figure specks in the background, the mask without either): specks
    of at most PINHOLE_MAX_PX pixels, 4-connected; background touching the frame is never a pinhole."""
    framed = np.pad(~person, 1, constant_values=True).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(framed, connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] <= PINHOLE_MAX_PX
    small[0] = small[labels[0, 0]] = False  # the figure's own label, and the background around it
    holes = small[labels[1:-1, 1:-1]]
    _, fg_labels, fg_stats, _ = cv2.connectedComponentsWithStats(person.astype(np.uint8), connectivity=4)
    tiny = fg_stats[:, cv2.CC_STAT_AREA] <= PINHOLE_MAX_PX
    tiny[0] = False
    return int(small.sum()), int(tiny.sum()), (person | holes) & ~tiny[fg_labels]


def without_pinholes(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask (any dtype) with its pinholes filled and its specks removed, in the same dtype."""
    return pinholes(np.asarray(mask) > 0)[2].astype(np.asarray(mask).dtype)
