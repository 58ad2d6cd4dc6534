"""How a data set's stored mask values become person (1) and background (0): one rule per set.

`binary` (0/255 or 0/1, as in the built-in set; anything else is refused), `nonzero` (any value > 0: instance ids
such as Penn-Fudan's), `==V` (the value V), `in:V1,V2,...` (any of those values: the classes that mean person in a
class-index mask) and `rgb:R,G,B` (that colour in a colour mask).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seglib.errors import DataError
from seglib.io import load_mask_raw, open_image

RULE_HELP = ("binary (0/255 or 0/1), nonzero (any value > 0, e.g. instance ids), ==V (the value V), "
             "in:V1,V2 (any of those values), rgb:R,G,B (that colour in a colour mask)")
_VALUES = re.compile(r"\d{1,5}(,\d{1,5})*")


@dataclass(frozen=True)
class MaskRule:
    """A parsed rule (`MaskRule.parse("in:1,2")`); `read(path)` gives the 0/1 person mask of a file."""

    text: str
    kind: str  # binary | nonzero | values | colour
    values: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> MaskRule:
        text = str(text).strip()
        if text in ("binary", "nonzero"):
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
        if self.kind == "colour":
            rgb = np.asarray(open_image(path).convert("RGB"), dtype=np.uint8)
            return (rgb == np.array(self.values, dtype=np.uint8)).all(axis=2).astype(np.uint8)
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
