"""The run configuration, one source of truth for the CLI, the notebooks and saved configs: each setting declared
once in `TrainConfig` with its type (a `Literal` of its names, for a choice), its default and its rules
(`setting(default, *rules)`), which `validate` checks. Profiles (`seglib.profiles`) list what they change."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import yaml

from seglib.infra.devices import AUTO_DEVICE, DEVICES
from seglib.infra.errors import ConfigError
from seglib.infra.values import (
    AT_LEAST_ONE,
    MAX_INT,
    NOT_NEGATIVE,
    POSITIVE,
    TYPE_WORDS,
    TYPES,
    Rule,
    at_most,
    check_value,
    coerce_value,
    one_of,
    rule,
)
from seglib.models.model_registry import MODELS, NO_WEIGHTS, UNET, check_input_size, model_entry

# The choices, each name written once here; the modules that implement them key their tables by these constants.
# Geometry: how a photo becomes the network input (letterbox: padded to a square; resize: stretched; rect: padded
# to a multiple of the stride).
GEOMETRIES = LETTERBOX, RESIZE, RECT = ("letterbox", "resize", "rect")
# zoom: standard, plus the figure zoomed out (small, padded) or in (filling the frame): figures of every size
AUGMENTATIONS = NO_AUGMENTATION, LIGHT, STANDARD, STRONG, ZOOM = ("none", "light", "standard", "strong", "zoom")
SCHEDULES = ONECYCLE, COSINE, CONSTANT = ("onecycle", "cosine", "constant")
TRAIN_ON = TRAIN_SPLIT, TRAIN_AND_VAL = ("train", "train+val")

# a set's description (data/datasets/NAME.yaml) saying its masks are a program's, not a person's: `ignore_band` applies
AUTOMATIC_LABELS = "automatic"


def _weights_list(text: str) -> list[float] | None:
    """The numbers of a `data_weights` value ("1,2,0.5"); None when it is not such a list."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) and v >= 0 for v in values) and any(values) else None


def data_weights_of(cfg: TrainConfig) -> list[float] | None:
    """Each trained set's sampling weight, in `data`'s order; None when `data_weights` is empty (sets drawn in
    proportion to their sizes)."""
    return _weights_list(cfg.data_weights) if cfg.data_weights.strip() else None


SET_WEIGHTS = rule(lambda v: not v.strip() or _weights_list(v) is not None,
                   "empty (sets in proportion to their sizes) or numbers 0 or more separated by commas, one per set "
                   "of `data`, at least one positive")
FOLDER = rule(lambda v: v == v.strip() and not any(c in v for c in "\0\n"), "empty (off) or a folder's path")
SET_NAMES = rule(lambda v: all(n := [s.strip() for s in v.split(",")]) and len(set(n)) == len(n),
                 "registered set names separated by commas, each once (seglib data list)")


def setting(default: Any, *rules: Rule) -> Any:
    """A TrainConfig field: its default and the rules its value must meet."""
    return field(default=default, metadata={"rules": rules})


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved with the run and inside every checkpoint. The defaults are the
    cpu-scratch recipe: a bare TrainConfig() is a valid from-scratch run."""

    profile: str = "cpu-scratch"
    # model
    model: Literal[MODELS] = UNET  # seglib.models.model_registry: its entry says which settings below it reads
    # U-Net width: unet's first level; mediapipe-unet's decoder at stride 2
    base_channels: int = setting(16, AT_LEAST_ONE, at_most(1024))
    depth: int = setting(4, AT_LEAST_ONE, at_most(12))  # compact U-Net levels
    encoder: str = "resnet18"  # smp-unet encoder
    # where training starts: none, or what the model's entry accepts (imagenet, mediapipe, a local file)
    encoder_weights: str = NO_WEIGHTS
    # data
    data: str = setting("human-seg", SET_NAMES)  # the registered set(s) to train on: NAME or A,B (seglib data list)
    input_size: int = setting(128, AT_LEAST_ONE, at_most(8192))  # side of the square network input in pixels
    # photo -> input: letterbox (keep aspect, pad to a square) | resize (stretch to a square, MediaPipe's) | rect
    # (keep aspect, longest side input_size, pad to a multiple of the stride)
    geometry: Literal[GEOMETRIES] = LETTERBOX
    augment: Literal[AUGMENTATIONS] = STANDARD
    # each set's share of the photos an epoch draws, in `data`'s order ("1,1,1"; empty: in proportion to their sizes)
    data_weights: str = setting("", SET_WEIGHTS)
    # photos drawn per epoch, with replacement when data_weights is set (0 = every training photo once)
    epoch_samples: int = setting(0, NOT_NEGATIVE, at_most(10_000_000))
    # pixels of the network input each side of a label edge that the loss ignores, on sets whose description says
    # `labels: automatic` (0 = off)
    ignore_band: int = setting(0, NOT_NEGATIVE, at_most(256))
    # train on masks without pinholes: specks of at most 16 px filled or removed (seglib.data.mask_rules); val and
    # test are always scored against the masks as published
    fill_pinholes: bool = False
    # probability of pasting the figure onto another background (seglib.transforms.compositing; 0 = off)
    composite: float = setting(0.0, rule(lambda v: 0 <= v <= 1, "a probability, from 0 (off) to 1"))
    # decoded training images are shrunk to this longest side once, in memory
    cache_max_side: int = setting(256, AT_LEAST_ONE, at_most(8192))
    limit_train: int = setting(0, NOT_NEGATIVE)  # use only the first N training images (0 = all)
    limit_val: int = setting(0, NOT_NEGATIVE)  # use only the first N validation images (0 = all)
    # cross-validation: train on train+val less this fold of data/splits/folds.csv, validate on it
    fold: int = setting(-1, rule(lambda v: v >= -1, "-1 (the train/val split) or a fold number of folds.csv"))
    inner_fold: int = -1  # nested (the fold ensemble's estimate): also leave this fold out and validate on it instead
    # train+val: refit on all 246 train+val photos, keep the last epoch (val trains too)
    train_on: Literal[TRAIN_ON] = TRAIN_SPLIT
    # optimisation
    epochs: int = setting(75, AT_LEAST_ONE)
    batch_size: int = setting(8, AT_LEAST_ONE, at_most(65536))
    lr: float = setting(3e-3, POSITIVE)
    weight_decay: float = setting(1e-4, NOT_NEGATIVE)
    schedule: Literal[SCHEDULES] = ONECYCLE
    dice_weight: float = setting(1.0, NOT_NEGATIVE)
    bce_weight: float = setting(1.0, NOT_NEGATIVE)
    dice_per_image: bool = False  # soft Dice of each image, averaged (like mean IoU); False: pooled over the batch
    # BCE of the pixels within boundary IoU's band of a mask edge weighs 1 + this, the others 1 (0 = off)
    edge_weight: float = setting(0.0, NOT_NEGATIVE, at_most(1000))
    # the Lovász hinge of each image (a surrogate of 1 - IoU, per photo like our mean IoU) added to the loss (0 = off)
    lovasz_weight: float = setting(0.0, NOT_NEGATIVE, at_most(1000))
    # exponential moving average of the weights, evaluated and saved (0 = off)
    ema_decay: float = setting(0.0, rule(lambda v: 0 <= v < 1, "must be 0 (off) or between 0 and 1"))
    # pull predictions toward MediaPipe's frozen own on the same photo (0 = off)
    distill_weight: float = setting(0.0, NOT_NEGATIVE)
    # the teacher of distill_weight: a folder of <photo stem>.npy probabilities at photo resolution (e.g. MediaPipe
    # Pose's masks; <folder>/<set>/<stem>.npy first); empty: MediaPipe selfie's frozen network
    teacher_masks: str = setting("", FOLDER)
    # L2-SP (Li et al., ICML 2018): alpha/2 ||w - w0||^2 toward the starting weights; weight_decay then applies to
    # the new weights only (0 = off)
    l2sp_weight: float = setting(0.0, NOT_NEGATIVE)
    patience: int = setting(0, NOT_NEGATIVE)  # early stopping: epochs without val IoU gain (0 = off)
    max_train_minutes: float = setting(0.0, NOT_NEGATIVE)  # stop after this many minutes of training (0 = no limit)
    # evaluation: the probability threshold used during training-time validation
    threshold: float = setting(0.5, rule(lambda v: 0 < v < 1, "must be between 0 and 1"))
    # runtime
    seed: int = setting(42, NOT_NEGATIVE)
    device: Literal[DEVICES] = AUTO_DEVICE
    # DataLoader workers (-1 = auto: 0 on CPU, up to 8 on CUDA)
    num_workers: int = setting(-1, rule(lambda v: v >= -1, "must be -1 (auto), 0 or more"), at_most(256))
    threads: int = setting(0, NOT_NEGATIVE, at_most(1024))  # torch CPU threads (0 = all cores)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_saved_dict(self) -> dict:
        """What a run's config.yaml, a checkpoint and an ONNX file store: every setting and the schema version."""
        return {SCHEMA_KEY: CONFIG_SCHEMA, **self.to_dict()}

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


HINTS = typing.get_type_hints(TrainConfig)
# each setting's type by name ("str" for a choice), and the rules its value must meet (its choices first)
TYPE_NAMES = {name: "str" if typing.get_origin(hint) is Literal else hint.__name__ for name, hint in HINTS.items()}
RULES = {f.name: ((one_of(*typing.get_args(HINTS[f.name])),) if typing.get_origin(HINTS[f.name]) is Literal else ())
         + f.metadata.get("rules", ()) for f in fields(TrainConfig)}


def input_multiple(cfg: TrainConfig) -> int:
    """What the network's input height and width must be multiples of (its stride, from its registry entry)."""
    return model_entry(cfg.model).stride_for(cfg)


def validate(cfg: TrainConfig) -> None:
    """ConfigError (one line, naming the setting and its rule) when a field has the wrong type or breaks a rule
    declared beside it, or the settings do not go together."""
    for f in fields(TrainConfig):
        value, type_name = getattr(cfg, f.name), TYPE_NAMES[f.name]
        kind = TYPES[type_name]
        if (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))) and not (
                kind is float and type(value) is int):
            raise ConfigError(f"setting {f.name}={value!r}: expected {type_name} ({TYPE_WORDS[type_name]})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"setting {f.name}={value}: must be a finite number")
        if type(value) is int and not -MAX_INT <= value <= MAX_INT:
            raise ConfigError(f"setting {f.name}={value}: too large (at most {MAX_INT})")
        check_value(f.name, value, RULES[f.name])
    check_model_settings(cfg)
    check_combinations(cfg)


def check_model_settings(cfg: TrainConfig) -> None:
    """What the model's registry entry asks of the settings: input_size a multiple of its stride, starting weights
    it accepts, a training batch its layers take."""
    entry = model_entry(cfg.model)
    check_input_size(cfg, cfg.input_size, cfg.input_size, what=f"setting input_size={cfg.input_size}")
    entry.starting_weights(cfg.encoder_weights)
    if cfg.batch_size < entry.min_train_batch:
        raise ConfigError(f"setting batch_size={cfg.batch_size}: model={cfg.model} trains on batches of "
                          f"{entry.min_train_batch} or more")


def check_combinations(cfg: TrainConfig) -> None:
    """The settings that must go together: a fold run trains on the other folds, an inner fold is another fold,
    the loss has a weight."""
    if cfg.fold >= 0 and cfg.train_on != TRAIN_SPLIT:
        raise ConfigError(f"settings fold={cfg.fold} and train_on={cfg.train_on}: a fold run trains on the other folds")
    if cfg.inner_fold != -1 and (cfg.fold < 0 or cfg.inner_fold < 0 or cfg.inner_fold == cfg.fold):
        raise ConfigError(f"settings fold={cfg.fold} and inner_fold={cfg.inner_fold}: an inner fold is another fold "
                          "number of folds.csv, left out beside a fold (-1: none)")
    if cfg.dice_weight == 0 and cfg.bce_weight == 0 and cfg.lovasz_weight == 0:
        raise ConfigError("settings dice_weight=0, bce_weight=0 and lovasz_weight=0: the loss would be zero; give "
                          "one a weight")
    if cfg.edge_weight and cfg.bce_weight == 0:
        raise ConfigError(f"settings edge_weight={cfg.edge_weight:g} and bce_weight=0: edge_weight weighs the BCE "
                          "term; give bce_weight a weight")
    check_lever_combinations(cfg)


def check_lever_combinations(cfg: TrainConfig) -> None:
    """The training levers' settings that must go together: as many weights as sets, a sampler the geometry's
    batches allow, a teacher that is used, starting weights to pull toward."""
    weights = data_weights_of(cfg)
    sets = [n.strip() for n in cfg.data.split(",")]
    if weights is not None and len(weights) != len(sets):
        raise ConfigError(f"settings data_weights={cfg.data_weights} and data={cfg.data}: give one weight per set "
                          f"({len(sets)})")
    if (weights is not None or cfg.epoch_samples) and cfg.geometry == RECT:
        raise ConfigError(f"settings data_weights/epoch_samples and geometry={RECT}: rect batches group photos by "
                          "shape and draw every photo once; use letterbox or resize")
    if cfg.teacher_masks and not cfg.distill_weight:
        raise ConfigError(f"settings teacher_masks={cfg.teacher_masks} and distill_weight=0: the teacher would not be "
                          "used; give distill_weight a weight")
    if cfg.teacher_masks and cfg.composite:
        raise ConfigError(f"settings teacher_masks and composite={cfg.composite:g}: a pasted photo has no teacher "
                          "probabilities; set composite=0")
    if cfg.l2sp_weight and cfg.encoder_weights == NO_WEIGHTS:
        raise ConfigError(f"settings l2sp_weight={cfg.l2sp_weight:g} and encoder_weights={NO_WEIGHTS}: L2-SP pulls "
                          "toward starting weights, and a run from scratch has none")


# The layout of a saved config (`TrainConfig.to_saved_dict`). Version 1: configs saved before the version was
# recorded (no SCHEMA_KEY). A config of the current version holds every setting.
CONFIG_SCHEMA = 8
SCHEMA_KEY = "config_schema"
# Settings added after configs were first saved: the first schema version that holds them, and the value that
# reproduces how a run saved before it existed was trained (seglib's behaviour then). An older config lacking one
# gets this value, never today's default, so a changed default cannot reinterpret an old checkpoint. Adding a
# setting: raise CONFIG_SCHEMA and add it here with the value that keeps older runs as they were.
ADDED_SETTINGS: dict[str, tuple[int, Any]] = {
    "ema_decay": (2, 0.0),  # no averaged weights
    "geometry": (2, LETTERBOX),  # aspect kept, padded to a square
    "fold": (2, -1),  # the train/val split, no cross-validation fold
    "train_on": (2, TRAIN_SPLIT),  # val photos never trained
    "dice_per_image": (2, False),  # soft Dice pooled over the batch
    "distill_weight": (2, 0.0),  # no distillation
    "data": (2, "human-seg"),  # the workbook's one data set
    "composite": (3, 0.0),  # no compositing
    "inner_fold": (4, -1),  # no nested cross-validation
    "data_weights": (5, ""),  # sets drawn in proportion to their sizes
    "epoch_samples": (5, 0),  # every training photo once per epoch
    "ignore_band": (5, 0),  # every labelled pixel scored
    "teacher_masks": (5, ""),  # distill_weight's teacher: MediaPipe selfie's network
    "l2sp_weight": (5, 0.0),  # no pull toward the starting weights
    "fill_pinholes": (6, False),  # masks as published
    "edge_weight": (7, 0.0),  # every pixel's BCE weighs the same
    "lovasz_weight": (8, 0.0),  # no Lovász hinge
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
    unknown = sorted(str(k) for k in settings if k not in TYPE_NAMES)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (written by a newer seglib?)")
    before = _values_before(schema, settings, source)
    try:
        typed = {key: coerce_value(key, value, TYPE_NAMES[key], read_text=False) for key, value in settings.items()}
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
    missing = [name for name in TYPE_NAMES if name not in present]
    lacking = [name for name in missing if ADDED_SETTINGS.get(name, (1, None))[0] <= schema]
    if lacking:
        raise ConfigError(f"{source}: setting(s) {', '.join(lacking)} missing; a config of schema {schema} holds "
                          "every one (edited by hand?)")
    return {name: ADDED_SETTINGS[name][1] for name in missing}


def config_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_saved_dict(), sort_keys=False)
