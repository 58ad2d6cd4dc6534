"""The named recipes (profiles) and how a run's settings are made from one: its changes to `TrainConfig`'s
defaults, then `--set` overrides, checked as `seglib.settings` declares them."""

from __future__ import annotations

import logging
import os

from seglib.infra.errors import ConfigError
from seglib.infra.paths import ENV_PROFILE
from seglib.infra.values import coerce_value
from seglib.models.model_registry import MEDIAPIPE_SELFIE, MEDIAPIPE_UNET, MEDIAPIPE_WEIGHTS
from seglib.settings import LIGHT, TYPE_NAMES, TrainConfig, validate

logger = logging.getLogger(__name__)

# the recipe the multi-domain val rule chose within a 20-minute training budget on a 2-core CPU: MediaPipe's selfie
# segmenter (bundled, Apache-2.0) fine-tuned on the training splits of every registered set, each set drawn equally
# often (the sets not on this machine are left out, with a line); docs/recipes.md and the log
MULTI_DOMAIN = dict(model=MEDIAPIPE_SELFIE, encoder_weights=MEDIAPIPE_WEIGHTS, input_size=448, cache_max_side=560,
                    epochs=40, lr=1e-3, data="human-seg,pennfudan,viton", data_weights="1,1,1", epoch_samples=320)

# Each profile: what it changes from TrainConfig's defaults (the cpu-scratch recipe).
PROFILES: dict[str, dict] = {
    # seconds: tests and CI
    "smoke": dict(base_channels=4, depth=2, input_size=64, cache_max_side=96, limit_train=16, limit_val=8,
                  epochs=2, batch_size=4, augment=LIGHT, lr=1e-2),
    "cpu": MULTI_DOMAIN,
    # one GPU: the same recipe (mixed precision on CUDA), so that `auto` trains the default's recipe on any machine;
    # a larger input and longer training were level with it on the rule's val score (the log's 512 px and 60-epoch
    # rows), so a GPU trains the same model sooner
    "gpu": dict(MULTI_DOMAIN),
    # our compact U-Net trained from scratch, no pretrained weights (the cpu profile before fine-tuning won);
    # input size and epochs chosen within the same 20-minute budget (reports/experiments.csv)
    "cpu-scratch": {},
    # the canonical U-Net (concatenated skips) on MediaPipe's pretrained encoder, within the 20-minute budget
    "cpu-unet": dict(model=MEDIAPIPE_UNET, encoder_weights=MEDIAPIPE_WEIGHTS, input_size=448, cache_max_side=560,
                     epochs=30, lr=1e-3),
}
PROFILE_NAMES = (*PROFILES, "auto")


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
    if "data" not in (overrides or {}):
        cfg = sets_on_this_machine(cfg)
    elif "data_weights" not in overrides:  # the profile's weights were for its own sets, not the ones named
        cfg = cfg.replace(data_weights="")
    return apply_overrides(cfg, overrides or {})


def sets_on_this_machine(cfg: TrainConfig) -> TrainConfig:
    """A profile's several training sets less those not on this machine, with a line naming each one left out and
    how to fetch it, so that a machine with only the built-in set still runs the profile; sets a user names with
    `data=` are never left out (a missing one is an error there)."""
    names = cfg.data.split(",")
    if len(names) < 2:
        return cfg
    from seglib.data.descriptions import get
    from seglib.data.registry import set_status

    status = set_status()
    kept = [n for n in names if not status.get(n)]
    for name in (n for n in names if status.get(n)):
        logger.warning(f"{name}: {status[name]} on this machine; the {cfg.profile} profile trains without it "
                       f"({get(name).fetch or 'seglib data list'} adds it)")
    if kept == names or not kept:
        return cfg
    weights = cfg.data_weights.split(",") if cfg.data_weights else []
    return cfg.replace(data=",".join(kept), data_weights=",".join(w for n, w in zip(names, weights, strict=True)
                                                                  if n in kept) if weights else "")


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    changes = {}
    for key, value in overrides.items():
        if key not in TYPE_NAMES or key == "profile":
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(k for k in TYPE_NAMES if k != 'profile')}")
        changes[key] = coerce_value(key, value, TYPE_NAMES[key])
    cfg = cfg.replace(**changes)
    validate(cfg)
    return cfg
