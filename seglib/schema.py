"""The one schema of what seglib stores with a trained model -- a checkpoint's fields and an exported ONNX file's
metadata -- checked whenever such a file is loaded: required fields, types, ranges, finite weights, the format
and the seglib version that wrote it. A file that fails is refused with one line naming the file and the field,
e.g. `<checkpoint path>: field 'threshold' is 1.5, expected a number between 0 and 1`.

A file written by a newer seglib (a newer format, or a higher seglib_version) is refused with both versions
named: its fields may mean something this seglib does not know, and a silently wrong mask is worse than a stop.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import seglib
from seglib.geometry import NORMALIZATION
from seglib.infra.errors import CheckpointError, ConfigError
from seglib.models.model_registry import model_entry
from seglib.settings import TrainConfig, config_from_dict, input_multiple

CHECKPOINT_FORMAT = "seglib-checkpoint/1"
ONNX_FORMAT = "seglib-onnx/1"
KINDS = {"checkpoint": CHECKPOINT_FORMAT, "onnx": ONNX_FORMAT}
NORMALIZATION_RTOL = 1e-6  # stored as Python floats (pickle or JSON): equal values round-trip exactly


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _three_numbers(v: Any, positive: bool = False) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 3
            and all(_number(x) and math.isfinite(x) and (x > 0 or not positive) for x in v))


def _normalization(v: Any) -> bool:
    return isinstance(v, dict) and _three_numbers(v.get("mean")) and _three_numbers(v.get("std"), positive=True)


def _weights_table(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(k, str) and _is_tensor(t) for k, t in v.items())


def _is_tensor(value: Any) -> bool:
    """A torch tensor (without importing torch: when it was never imported, nothing is one; an ONNX file's
    metadata is checked with this module before torch is loaded, if ever)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _table_or_none(v: Any) -> bool:
    return v is None or isinstance(v, dict)


@dataclass(frozen=True)
class Field:
    """One stored field: what a good value is (in words, for the refusal) and whether each kind requires it."""

    name: str
    expected: str
    valid: Callable[[Any], bool]
    in_checkpoint: bool = False  # required in a checkpoint
    in_onnx: bool = False  # required in an ONNX file's metadata
    decode: Callable[[str], Any] | None = None  # ONNX metadata values are text: how to read this one back


FIELDS = (
    Field("format", "a seglib format name", lambda v: isinstance(v, str), True, True, str),
    Field("seglib_version", "a version like 0.1.0", lambda v: isinstance(v, str) and _version(v) is not None,
          True, True, str),
    Field("config", "a table of training settings", lambda v: isinstance(v, dict), True, True, json.loads),
    Field("threshold", "a number between 0 and 1", lambda v: _number(v) and 0 < v < 1, True, True, float),
    Field("input_size", "a positive whole number", lambda v: _whole(v) and v > 0, True, True, int),
    Field("normalization", "{'mean': [3 numbers], 'std': [3 positive numbers]}", _normalization, True, True,
          json.loads),
    Field("model_state", "a table of weight tensors", _weights_table, True, False),
    Field("model_spec", "a graph description (a table) or None", _table_or_none),
    Field("weights", "text", lambda v: isinstance(v, str), decode=str),
    Field("epoch", "a whole number, 0 or more", lambda v: v is None or (_whole(v) and v >= 0), decode=json.loads),
    Field("val_iou", "a number", lambda v: v is None or _number(v), decode=json.loads),
    Field("best_val_iou", "a number", lambda v: v is None or _number(v), decode=json.loads),
    Field("bad_epochs", "a whole number, 0 or more", lambda v: _whole(v) and v >= 0),
    Field("stop_reason", "text", lambda v: isinstance(v, str)),
    Field("history", "a list of epochs", lambda v: isinstance(v, list)),
    Field("torch_version", "text", lambda v: isinstance(v, str), decode=str),
    Field("optimizer_state", "a table or None", _table_or_none),
    Field("scheduler_state", "a table or None", _table_or_none),
    Field("scaler_state", "a table or None", _table_or_none),
    Field("data_split", "a table or None", _table_or_none),
    # WiSE-FT (`training.interpolate`): alpha, the source checkpoint and what was interpolated
    Field("interpolation", "a table or None", _table_or_none),
)
BY_NAME = {f.name: f for f in FIELDS}


def refuse(where: str, problem: str) -> CheckpointError:
    """The one-line error for a stored model that cannot be used."""
    return CheckpointError(f"{where}: {problem}")


def shown(value: Any, limit: int = 48) -> str:
    """A stored value as a refusal quotes it: short, on one line, its kind said where a repr would mislead."""
    if isinstance(value, str):
        text = repr(value)
        return (text if len(text) <= limit else text[:limit] + "...'") + " (text)"
    if isinstance(value, dict):
        return f"a table of {len(value)} entries"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if _is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else f"a {type(value).__name__}"


def _version(text: str) -> tuple[int, ...] | None:
    """(0, 1, 0) for '0.1.0' (a suffix such as '.dev1' or '+local' is ignored); None when not a version."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def _padded(version: tuple[int, ...], n: int = 4) -> tuple[int, ...]:
    return version + (0,) * (n - len(version))


def check_format(found: Any, kind: str, where: str) -> None:
    """The format names this kind of file and a version this seglib reads (a newer one is refused by name)."""
    wanted = KINDS[kind]
    family, _, number = wanted.rpartition("/")
    if not isinstance(found, str) or not found.startswith(family + "/"):
        what = "seglib checkpoint" if kind == "checkpoint" else "seglib ONNX export"
        raise refuse(where, f"not a {what} (format {shown(found)}, expected {wanted!r})")
    theirs = found.rpartition("/")[2]
    if not theirs.isdigit():
        raise refuse(where, f"field 'format' is {shown(found)}, expected {wanted!r}")
    if int(theirs) > int(number):
        raise refuse(where, f"format {found!r} is newer than this seglib {seglib.__version__} reads ({wanted!r}); "
                            "update seglib to use this file")
    if int(theirs) < int(number):  # no older format exists yet; when one does, it is read here
        raise refuse(where, f"format {found!r} is older than this seglib reads ({wanted!r})")


def check_seglib_version(found: Any, where: str) -> None:
    """A file written by a newer seglib than this one is refused, naming both versions."""
    theirs = _version(found) if isinstance(found, str) else None
    if theirs is None:
        raise refuse(where, f"field 'seglib_version' is {shown(found)}, expected {BY_NAME['seglib_version'].expected}")
    ours = _version(seglib.__version__) or (0,)
    if _padded(theirs) > _padded(ours):
        raise refuse(where, f"written by seglib {found}, newer than this seglib {seglib.__version__}; update seglib "
                            f"to {found} or later to use it (its fields may mean what this version does not know)")


def check_normalization(value: dict, where: str) -> None:
    """Models are fed inputs normalised with seglib's NORMALIZATION (training, prediction and MediaPipe's graph
    all use it): a file that says otherwise would give wrong masks, so it is refused."""
    for key in ("mean", "std"):
        expected = NORMALIZATION[key]
        if not all(math.isclose(a, b, rel_tol=NORMALIZATION_RTOL) for a, b in zip(value[key], expected, strict=True)):
            raise refuse(where, f"field 'normalization' is mean {list(value['mean'])} std {list(value['std'])}, "
                                f"but this seglib feeds its models mean {list(NORMALIZATION['mean'])} std "
                                f"{list(NORMALIZATION['std'])}; its masks would be wrong")


def validate_stored(state: dict, kind: str, where: str) -> TrainConfig:
    """Check a checkpoint's state (kind 'checkpoint') or an ONNX file's decoded metadata (kind 'onnx') against
    the schema; the stored TrainConfig when it passes, else a one-line CheckpointError naming file and field."""
    if not isinstance(state, dict):
        raise refuse(where, f"not a seglib {kind} (holds {shown(state)}, expected a table of fields)")
    check_format(state.get("format"), kind, where)
    if "seglib_version" in state:  # before the other fields: a newer version may have changed them
        check_seglib_version(state["seglib_version"], where)
    for f in FIELDS:
        required = f.in_checkpoint if kind == "checkpoint" else f.in_onnx
        if f.name not in state:
            if required:
                raise refuse(where, f"field '{f.name}' is missing, expected {f.expected}; not a complete seglib "
                                    f"{kind} (written or edited by another program?)")
            continue
        if not f.valid(state[f.name]):
            raise refuse(where, f"field '{f.name}' is {shown(state[f.name])}, expected {f.expected}")
    try:  # the stored training settings, checked like `--set` values
        cfg = config_from_dict(state["config"], source="field 'config'")
    except ConfigError as exc:
        raise refuse(where, str(exc)) from None
    multiple = input_multiple(cfg)
    if state["input_size"] % multiple:
        raise refuse(where, f"field 'input_size' is {state['input_size']}, expected a positive multiple of "
                            f"{multiple} (the stride of its {cfg.model})")
    check_normalization(state["normalization"], where)
    if kind == "checkpoint":
        if model_entry(cfg.model).saves_graph and not isinstance(state.get("model_spec"), dict):
            raise refuse(where, f"field 'model_spec' is {shown(state.get('model_spec'))}, expected the graph of "
                                f"its model={cfg.model}")
    return cfg





