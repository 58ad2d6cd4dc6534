"""seglib.settings: profiles, overrides, validation."""

from __future__ import annotations

import pytest

from seglib.errors import ConfigError
from seglib.settings import PROFILES, TrainConfig, make_config, parse_set_args


def test_profiles_build_and_differ():
    smoke, cpu, gpu = (make_config(p) for p in ("smoke", "cpu", "gpu"))
    assert smoke.epochs < cpu.epochs < gpu.epochs
    assert cpu.input_size < gpu.input_size
    assert all(set(PROFILES[p]) <= set(TrainConfig.__dataclass_fields__) for p in PROFILES)
    scratch = make_config("cpu-scratch")
    assert (cpu.model, cpu.encoder_weights) == (gpu.model, gpu.encoder_weights) == ("mediapipe-selfie", "mediapipe")
    assert (scratch.model, scratch.encoder_weights) == ("unet", "none")
    # the dataclass defaults are the cpu-scratch recipe, so a bare TrainConfig() is a valid from-scratch run
    assert TrainConfig(profile="cpu-scratch") == scratch


def test_auto_is_cpu_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert make_config("auto").profile == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_config("auto").profile == "gpu"


def test_overrides_are_typed():
    cfg = make_config("smoke", parse_set_args(["epochs=3", "lr=0.001", "amp=false", "augment=none"]))
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.augment) == (3, 0.001, False, "none")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epoch": 3}, "unknown setting 'epoch'"),
        ({"epochs": "three"}, "expected int"),
        ({"epochs": 2.5}, "expected int"),
        ({"augment": "wild"}, "expected one of"),
        ({"input_size": 66}, r"multiple of 4 \(unet: 2\*\*depth\)"),
        ({"threshold": 1.5}, "between 0 and 1"),
        ({"amp": "maybe"}, "expected bool"),
    ],
)
def test_bad_overrides_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("smoke", overrides)


def test_unknown_profile():
    with pytest.raises(ConfigError, match="profile 'fast' unknown"):
        make_config("fast")


def test_set_arg_needs_equals():
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["epochs"])
