"""How the network's probabilities are made at prediction time, as one value: `InferenceOptions`.

- `scales`: the input sizes whose probabilities are averaged, each mapped back to the photo first (multi-scale
  inference; empty: the size the model was trained at alone).
- `max_upscale`: never magnify a photo's longest side more than this factor (scale-aware input: a small photo gets
  a smaller input than the trained size; 0: off). See `seglib.predict.scales`.
- `second_look`: predict again on a crop around each figure found by the first pass, at the full input size, and
  paste it back with a feathered edge (`seglib.predict.second_look`).
- `refine`: the edges fitted to the photo's own at its resolution by a guided filter, last
  (`seglib.predict.outputs.refine_probabilities`).

An evaluation with any of them is saved apart from the plain one, in the folder `lever_folder` names; a run
records the setting chosen on val beside its threshold (`seglib.predict.val_choice`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path

from seglib.infra.errors import ConfigError

LEVER_PREFIX = "@"  # an evaluation folder with levers: no split, registered set or external set name starts so


@dataclass(frozen=True)
class InferenceOptions:
    """The prediction-time levers (see the module); `InferenceOptions()` predicts as the model was trained."""

    scales: tuple[int, ...] = ()
    max_upscale: float = 0.0
    second_look: bool = False
    refine: bool = False

    def __post_init__(self):
        scales = tuple(self.scales) if not isinstance(self.scales, (str, numbers.Number)) else None
        if scales is None or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0 for s in scales):
            raise ConfigError(f"scales={self.scales!r}: expected input sizes in pixels, e.g. (256, 448)")
        object.__setattr__(self, "scales", tuple(sorted({int(s) for s in scales})))
        upscale = self.max_upscale
        if isinstance(upscale, bool) or not isinstance(upscale, numbers.Real) or not math.isfinite(upscale) \
                or upscale < 0:
            raise ConfigError(f"max_upscale={upscale!r}: expected a factor >= 0 (0: off), e.g. 1.5")
        object.__setattr__(self, "max_upscale", float(upscale))
        object.__setattr__(self, "second_look", bool(self.second_look))
        object.__setattr__(self, "refine", bool(self.refine))

    @property
    def levers(self) -> InferenceOptions:
        """These options less `refine`: what makes the probabilities before the threshold, which a threshold chosen
        on val goes with (refined edges move only a band a few pixels wide around it)."""
        return replace(self, refine=False)

    @property
    def active(self) -> bool:
        """Any lever on."""
        return self != InferenceOptions()

    def tag(self) -> str:
        """A name for the levers, '' when none: 'scales-256-448_upscale-1.5_look_refine'."""
        parts = [f"scales-{'-'.join(map(str, self.scales))}"] if self.scales else []
        parts += [f"upscale-{self.max_upscale:g}"] if self.max_upscale else []
        parts += ["look"] if self.second_look else []
        parts += ["refine"] if self.refine else []
        return "_".join(parts)

    def describe(self) -> str:
        """The levers in words ('' when all are off)."""
        parts = [f"input sizes {'+'.join(map(str, self.scales))} averaged"] if len(self.scales) > 1 else \
            [f"input {self.scales[0]}px"] if self.scales else []
        parts += [f"photos magnified at most {self.max_upscale:g}x"] if self.max_upscale else []
        parts += ["a second look at each figure"] if self.second_look else []
        parts += ["edges refined to the photo (guided filter)"] if self.refine else []
        return ", ".join(parts)

    def record(self) -> dict:
        """The levers as an evaluation's metrics.json records them under "inference"."""
        return {"scales": list(self.scales), "max_upscale": self.max_upscale, "second_look": self.second_look,
                "refine": self.refine}

    @classmethod
    def from_record(cls, metrics: dict) -> InferenceOptions:
        """The options an evaluation's metrics.json (or an export's recorded protocol) was made with: its
        "inference" entry, and its "refine" flag (which every evaluation records); absent ones are off. An unreadable
        entry is a ConfigError."""
        levers = metrics.get("inference") or {}
        if not isinstance(levers, dict):
            raise ConfigError(f"inference={levers!r}: expected a mapping of scales, max_upscale, second_look")
        return cls(tuple(levers.get("scales") or ()), levers.get("max_upscale") or 0.0,
                   bool(levers.get("second_look")), bool(levers.get("refine") or metrics.get("refine")))


def lever_folder(eval_root: Path, inference: InferenceOptions | None) -> Path:
    """Where an evaluation with `inference` keeps its splits: `eval_root` itself without levers, else
    `eval_root/@<tag>`, so that it never meets a plain evaluation's files."""
    if inference is None or not inference.active:
        return Path(eval_root)
    return Path(eval_root) / f"{LEVER_PREFIX}{inference.tag()}"


def parse_scales(text: str) -> tuple[int, ...]:
    """'256,448' -> (256, 448); a ConfigError naming the text otherwise."""
    try:
        scales = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        scales = ()
    if not scales or any(s <= 0 for s in scales):
        raise ConfigError(f"--scales {text!r}: expected input sizes in pixels separated by commas, e.g. 256,448")
    return scales
