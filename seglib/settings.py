"""Training profiles and the run configuration: one source of truth for the CLI and the notebooks."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from seglib.infra.devices import DEVICES
from seglib.infra.errors import ConfigError
from seglib.infra.paths import ENV_PROFILE
from seglib.models.model_registry import MODELS, check_input_size, model_entry

# how a photo becomes the network input (seglib.transforms.pipelines): aspect kept and padded to a square, stretched to a
# square, or aspect kept and padded only to a multiple of the network's stride (rectangular inputs)
GEOMETRIES = ("letterbox", "resize", "rect")
PROFILE_NAMES = ("smoke", "cpu", "gpu", "cpu-scratch", "cpu-unet", "auto")


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved with the run and inside every checkpoint."""

    profile: str = "cpu-scratch"  # the field defaults below are the cpu-scratch recipe
    # model
    model: str = "unet"  # a name in seglib.models.model_registry (MODELS); its entry says which settings below it reads
    base_channels: int = 16  # U-Net width: unet's first level; mediapipe-unet's decoder at stride 2
    depth: int = 4  # compact U-Net levels
    encoder: str = "resnet18"  # smp-unet encoder
    encoder_weights: str = "none"  # where training starts: none, or what the model's entry accepts (imagenet,
    # mediapipe, a local file)
    # data
    data: str = "human-seg"  # the registered set(s) to train on: NAME or A,B (seglib data list)
    input_size: int = 128  # side of the square network input in pixels
    geometry: str = "letterbox"  # photo -> input: letterbox (keep aspect, pad to a square) | resize (stretch to a
    # square, MediaPipe's) | rect (keep aspect, longest side input_size, pad to a multiple of the stride)
    augment: str = "standard"  # none | light | standard | strong
    composite: float = 0.0  # probability of pasting the figure onto another background (seglib.transforms.compositing; 0 = off)
    cache_max_side: int = 256  # decoded training images are shrunk to this longest side once, in memory
    limit_train: int = 0  # use only the first N training images (0 = all)
    limit_val: int = 0  # use only the first N validation images (0 = all)
    fold: int = -1  # cross-validation: train on train+val less this fold of data/splits/folds.csv, validate on it
    inner_fold: int = -1  # nested (the fold ensemble's estimate): also leave this fold out and validate on it instead
    train_on: str = "train"  # train | train+val: refit on all 246 train+val photos, keep the last epoch (val trains too)
    # optimisation
    epochs: int = 75
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    dice_per_image: bool = False  # soft Dice of each image, averaged (like mean IoU); False: pooled over the batch
    ema_decay: float = 0.0  # exponential moving average of the weights, evaluated and saved (0 = off)
    distill_weight: float = 0.0  # pull predictions toward MediaPipe's frozen own on the same photo (0 = off)
    patience: int = 0  # early stopping: epochs without val IoU gain (0 = off)
    max_train_minutes: float = 0.0  # stop after this many minutes of training (0 = no limit)
    # evaluation
    threshold: float = 0.5  # probability threshold used during training-time validation
    # runtime
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = -1  # DataLoader workers (-1 = auto: 0 on CPU, up to 8 on CUDA)
    threads: int = 0  # torch CPU threads (0 = all cores)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_saved_dict(self) -> dict:
        """What a run's config.yaml, a checkpoint and an ONNX file store: every setting and the schema version."""
        return {SCHEMA_KEY: CONFIG_SCHEMA, **self.to_dict()}

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, dict] = {
    # seconds: tests and CI
    "smoke": dict(base_channels=4, depth=2, input_size=64, cache_max_side=96, limit_train=16, limit_val=8,
                  epochs=2, batch_size=4, augment="light", lr=1e-2),
    # the best recipe found within a 20-minute training budget on a 2-core CPU: MediaPipe's selfie segmenter
    # (bundled, Apache-2.0) fine-tuned on our training split; how it was chosen: docs/recipes.md and the log
    "cpu": dict(model="mediapipe-selfie", encoder_weights="mediapipe", input_size=448, cache_max_side=560,
                epochs=30, batch_size=8, lr=1e-3, schedule="onecycle", augment="standard"),
    # one GPU: the same recipe at a larger input, batch 16 for as many optimiser steps as the cpu profile;
    # its runs are rows of reports/experiments.csv (docs/results.md)
    "gpu": dict(model="mediapipe-selfie", encoder_weights="mediapipe", input_size=512, cache_max_side=640,
                epochs=60, batch_size=16, lr=1e-3, schedule="onecycle", augment="standard", patience=0),
    # our compact U-Net trained from scratch, no pretrained weights (the cpu profile before fine-tuning won);
    # input size and epochs chosen within the same 20-minute budget (reports/experiments.csv)
    "cpu-scratch": dict(model="unet", base_channels=16, depth=4, input_size=128, cache_max_side=256, epochs=75,
                        batch_size=8, lr=3e-3, schedule="onecycle", augment="standard"),
    # the canonical U-Net (concatenated skips) on MediaPipe's pretrained encoder, within the 20-minute budget
    "cpu-unet": dict(model="mediapipe-unet", encoder_weights="mediapipe", base_channels=16, input_size=448,
                     cache_max_side=560, epochs=30, batch_size=8, lr=1e-3, schedule="onecycle", augment="standard"),
}

CHOICES = {
    "model": MODELS,
    "geometry": GEOMETRIES,
    "train_on": ("train", "train+val"),
    "augment": ("none", "light", "standard", "strong"),
    "schedule": ("onecycle", "cosine", "constant"),
    "device": DEVICES,
}


def input_multiple(cfg: TrainConfig) -> int:
    """What the network's input height and width must be multiples of (its stride, from its registry entry)."""
    return model_entry(cfg.model).stride_for(cfg)


def resolve_profile(profile: str, source: str = "profile") -> str:
    """'auto' means gpu when CUDA is present, else cpu. `source` names where the value came from in errors."""
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"{source} {profile!r} unknown; expected one of {', '.join(PROFILE_NAMES)}")
    if profile == "auto":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return profile


def default_profile() -> str:
    """The profile notebooks use by default: $SEGLIB_PROFILE (CI sets smoke), else auto; a bad value is an
    error naming the variable."""
    value = os.environ.get(ENV_PROFILE, "").strip() or "auto"
    if value not in PROFILE_NAMES:
        raise ConfigError(f"${ENV_PROFILE}={value!r} is not a profile; expected one of {', '.join(PROFILE_NAMES)} "
                          f"(unset it or fix its value)")
    return value


def make_config(profile: str = "auto", overrides: dict | None = None) -> TrainConfig:
    """Profile defaults, then overrides; an unknown key or a bad value is a ConfigError."""
    name = resolve_profile(profile)
    cfg = TrainConfig(profile=name, **PROFILES[name])
    return apply_overrides(cfg, overrides or {})


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    known = {f.name: f for f in fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    changes = {}
    for key, value in overrides.items():
        if key not in known or key == "profile":
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(k for k in known if k != 'profile')}")
        changes[key] = coerce_value(key, value, hints[key].__name__)
    cfg = cfg.replace(**changes)
    validate(cfg)
    return cfg


TYPES = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict, "list": list}
# what each type means in messages: a user types text, so "expected int, got str" alone would be about Python
TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "dict": "a mapping such as "
              "{epochs: 5}", "list": "a list such as [val, test]", "str": "text"}
GOT_WORDS = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true/false", "dict": "a mapping",
             "list": "a list", "NoneType": "nothing"}
MAX_INT = 2**31 - 1  # the largest whole number a setting takes (torch and numpy take 32-bit values)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML itself keeps the last silently)."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(f"key {key!r} is given twice (line {key_node.start_mark.line + 1}); give it once")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(text: str, where: str) -> Any:
    """YAML text (a settings file, a `--set`/`-p` value) as data; a syntax error or a duplicate key is a
    ConfigError naming `where`."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def coerce_value(name: str, value: Any, type_name: str, what: str = "setting") -> Any:
    """A value from the command line (`--set`, `-p`) or papermill as its declared type.

    Text is read as YAML (`5`, `0.1`, `false`, `[val]`, `{epochs: 5}`), except for str; a bool also takes 0/1, an
    int any whole number (`2.0`, `1e3`). A mismatch is a ConfigError "<what> <name>=<value>: expected <words>".
    """
    raw = value if isinstance(value, str) else None
    if raw is not None:
        if type_name == "str" or type_name not in TYPES:
            return raw
        if not raw.strip():
            raise ConfigError(f"{what} {name}=: empty; expected {type_name} ({TYPE_WORDS[type_name]})")
        value = load_yaml(raw, f"{what} {name}={raw}")
    kind = TYPES.get(type_name)
    if kind is None:
        return value
    if kind in (int, float) and isinstance(value, str) and raw is not None:
        with contextlib.suppress(ValueError):
            value = float(raw)  # YAML 1.1 reads "1e-3", "1e9" and "nan" as text
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            shown = raw if raw is not None else repr(value)
            raise ConfigError(f"{what} {name}={shown}: expected {type_name} (a whole number), got {value:g}")
        value = int(value)
    if kind is bool and type(value) is int and value in (0, 1):
        value = bool(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        shown = raw if raw is not None else repr(value)
        got = GOT_WORDS.get(type(value).__name__, type(value).__name__)
        raise ConfigError(f"{what} {name}={shown}: expected {type_name} ({TYPE_WORDS[type_name]}), got {got}")
    if kind is int and not -MAX_INT <= value <= MAX_INT:
        shown = raw if raw is not None else repr(value)
        raise ConfigError(f"{what} {name}={shown}: too large (at most {MAX_INT})")
    return value


# largest values that make sense (larger ones only fail later, deep inside torch, numpy or the OS)
UPPER_LIMITS = {"input_size": 8192, "cache_max_side": 8192, "base_channels": 1024, "depth": 12,
                "batch_size": 65536, "threads": 1024, "num_workers": 256}


def validate(cfg: TrainConfig) -> None:
    """ConfigError (one line, naming the setting and its rule) when a field has the wrong type or range."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        value, kind = getattr(cfg, f.name), TYPES[hints[f.name].__name__]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            if not (kind is float and type(value) is int):
                raise ConfigError(f"setting {f.name}={value!r}: expected {hints[f.name].__name__} "
                                  f"({TYPE_WORDS[hints[f.name].__name__]})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"setting {f.name}={value}: must be a finite number")
        if type(value) is int and not -MAX_INT <= value <= MAX_INT:
            raise ConfigError(f"setting {f.name}={value}: too large (at most {MAX_INT})")
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"setting {key}={getattr(cfg, key)!r}: expected one of {', '.join(allowed)}")
    names = [n.strip() for n in cfg.data.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"setting data={cfg.data!r}: registered set names separated by commas, each once "
                          "(seglib data list)")
    positive = ("base_channels", "depth", "input_size", "epochs", "batch_size", "cache_max_side")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"setting {key}={getattr(cfg, key)!r}: must be positive")
    for key, limit in UPPER_LIMITS.items():
        if getattr(cfg, key) > limit:
            raise ConfigError(f"setting {key}={getattr(cfg, key)}: at most {limit}")
    check_model_settings(cfg)
    if cfg.fold >= 0 and cfg.train_on != "train":
        raise ConfigError(f"settings fold={cfg.fold} and train_on={cfg.train_on}: a fold run trains on the other folds")
    if cfg.fold < -1:
        raise ConfigError(f"setting fold={cfg.fold}: -1 (the train/val split) or a fold number of folds.csv")
    if cfg.inner_fold != -1 and (cfg.fold < 0 or cfg.inner_fold < 0 or cfg.inner_fold == cfg.fold):
        raise ConfigError(f"settings fold={cfg.fold} and inner_fold={cfg.inner_fold}: an inner fold is another fold "
                          "number of folds.csv, left out beside a fold (-1: none)")
    if not 0 < cfg.threshold < 1:
        raise ConfigError(f"setting threshold={cfg.threshold}: must be between 0 and 1")
    if not 0 <= cfg.composite <= 1:
        raise ConfigError(f"setting composite={cfg.composite}: a probability, from 0 (off) to 1")
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"setting ema_decay={cfg.ema_decay}: must be 0 (off) or between 0 and 1")
    if cfg.lr <= 0:
        raise ConfigError(f"setting lr={cfg.lr}: must be positive")
    if cfg.num_workers < -1:
        raise ConfigError(f"setting num_workers={cfg.num_workers}: must be -1 (auto), 0 or more")
    for key in ("seed", "limit_train", "limit_val", "patience", "threads", "weight_decay", "dice_weight",
                "bce_weight", "max_train_minutes", "distill_weight"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"setting {key}={getattr(cfg, key)}: must be 0 or more")
    if cfg.dice_weight == 0 and cfg.bce_weight == 0:
        raise ConfigError("settings dice_weight=0 and bce_weight=0: the loss would be zero; give one a weight")


def check_model_settings(cfg: TrainConfig) -> None:
    """What the model's registry entry asks of the settings: input_size a multiple of its stride, starting weights
    it accepts, a training batch its layers take."""
    entry = model_entry(cfg.model)
    check_input_size(cfg, cfg.input_size, cfg.input_size, what=f"setting input_size={cfg.input_size}")
    entry.starting_weights(cfg.encoder_weights)
    if cfg.batch_size < entry.min_train_batch:
        raise ConfigError(f"setting batch_size={cfg.batch_size}: model={cfg.model} trains on batches of "
                          f"{entry.min_train_batch} or more")


def parse_assignments(items: list[str] | None, option: str = "--set") -> dict[str, str]:
    """['key=value', ...] from `--set` or `-p` into {key: raw text} (typed later, by `coerce_value`); a key
    given twice is refused rather than the last one silently winning."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} {item!r}: expected key=value")
        if key in out:
            raise ConfigError(f"{option} {key}: given twice ({key}={out[key]}, {key}={value.strip()}); give it once")
        out[key] = value.strip()
    return out


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """`--set key=value ...` as a dict (values typed later by apply_overrides)."""
    return parse_assignments(items, "--set")


# The layout of a saved config (`TrainConfig.to_saved_dict`). Version 1: configs saved before the version was
# recorded (no SCHEMA_KEY). A config of the current version holds every setting.
CONFIG_SCHEMA = 4
SCHEMA_KEY = "config_schema"
# Settings added after configs were first saved: the first schema version that holds them, and the value that
# reproduces how a run saved before it existed was trained (seglib's behaviour then). An older config lacking one
# gets this value, never today's default, so a changed default cannot reinterpret an old checkpoint. Adding a
# setting: raise CONFIG_SCHEMA and add it here with the value that keeps older runs as they were.
ADDED_SETTINGS: dict[str, tuple[int, Any]] = {
    "ema_decay": (2, 0.0),  # no averaged weights
    "geometry": (2, "letterbox"),  # aspect kept, padded to a square
    "fold": (2, -1),  # the train/val split, no cross-validation fold
    "train_on": (2, "train"),  # val photos never trained
    "dice_per_image": (2, False),  # soft Dice pooled over the batch
    "distill_weight": (2, 0.0),  # no distillation
    "data": (2, "human-seg"),  # the workbook's one data set
    "composite": (3, 0.0),  # no compositing
    "inner_fold": (4, -1),  # no nested cross-validation
}


def config_from_dict(data: Any, source: str = "saved config") -> TrainConfig:
    """Rebuild a config saved with a run or a checkpoint, checked like `--set` values: every field's type and
    range (`validate`). A setting an older schema lacks takes the value in ADDED_SETTINGS (how such runs were
    trained); a setting missing from a config of its own schema, an unknown key (from a newer seglib), text where a
    number belongs or a value out of range is a ConfigError naming `source` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a mapping of settings (found {type(data).__name__})")
    schema = _schema_version(data, source)
    settings = {k: v for k, v in data.items() if k != SCHEMA_KEY}
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(str(k) for k in settings if k not in hints)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (written by a newer seglib?)")
    before = _values_before(schema, settings, source)
    typed = {}
    try:
        for key, value in settings.items():
            type_name = hints[key].__name__
            if isinstance(value, str) and type_name != "str":
                raise ConfigError(f"setting {key}={value!r}: expected {type_name} ({TYPE_WORDS[type_name]}), got text")
            typed[key] = coerce_value(key, value, type_name)
        cfg = TrainConfig(**before, **typed)
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def _schema_version(data: dict, source: str) -> int:
    """The saved config's schema version (1 when it records none); a newer or malformed one is a ConfigError."""
    version = data.get(SCHEMA_KEY, 1)
    if type(version) is not int or version < 1:
        raise ConfigError(f"{source}: {SCHEMA_KEY}={version!r}: expected a whole number, 1 or more")
    if version > CONFIG_SCHEMA:
        raise ConfigError(f"{source}: {SCHEMA_KEY}={version} is newer than this seglib reads ({CONFIG_SCHEMA}); "
                          "update seglib to use it")
    return version


def _values_before(schema: int, present: dict, source: str) -> dict:
    """The settings a config of `schema` may lack, at the values that reproduce its run (ADDED_SETTINGS); a
    setting it should hold and does not is a ConfigError."""
    missing = [f.name for f in fields(TrainConfig) if f.name not in present]
    lacking = [name for name in missing if ADDED_SETTINGS.get(name, (1, None))[0] <= schema]
    if lacking:
        raise ConfigError(f"{source}: setting(s) {', '.join(lacking)} missing; a config of schema {schema} holds "
                          "every one (edited by hand?)")
    return {name: ADDED_SETTINGS[name][1] for name in missing}


def load_settings_file(path: str | os.PathLike, source: str | None = None) -> dict:
    """A YAML settings file (a run's config.yaml) as a dict; unreadable text, a duplicate key or anything but a
    mapping is a ConfigError naming the file. Check the values with `config_from_dict`."""
    where = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the settings ({getattr(exc, 'strerror', None) or exc})") from None
    data = load_yaml(text, where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not a settings file (expected key: value lines)")
    return data


def config_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_saved_dict(), sort_keys=False)
