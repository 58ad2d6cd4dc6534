"""seglib.settings: profiles, overrides, validation."""

from __future__ import annotations

import ast
import re

import pytest

from seglib import settings
from seglib.infra.errors import ConfigError
from seglib.infra.paths import PROJECT_ROOT
from seglib.infra.values import coerce_value, load_settings_file, load_yaml, parse_assignments
from seglib.models.model_registry import MODELS
from seglib.profiles import PROFILES, make_config
from seglib.settings import TrainConfig, config_from_dict, validate


def test_profiles_build_and_differ():
    smoke, cpu, gpu = (make_config(p) for p in ("smoke", "cpu", "gpu"))
    assert smoke.epochs < cpu.epochs and smoke.input_size < cpu.input_size
    # `auto` trains the default's recipe on any machine: the gpu profile is the cpu one, mixed precision on CUDA
    assert gpu.replace(profile="cpu") == cpu and gpu.amp
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
    cfg = make_config("smoke", parse_assignments(["epochs=3", "lr=0.001", "amp=false", "augment=none"]))
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
        parse_assignments(["epochs"])


def test_a_setting_given_twice_is_refused_not_last_wins():
    with pytest.raises(ConfigError, match=r"^--set epochs: given twice \(epochs=2, epochs=3\); give it once$"):
        parse_assignments(["epochs=2", "epochs=3"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_assignments(["epochs=2", " epochs =2"])  # the same key however it is spaced


def test_a_key_given_twice_in_yaml_is_refused():
    with pytest.raises(ConfigError, match=r"key 'epochs' is given twice \(line 2\); give it once"):
        load_yaml("epochs: 2\nepochs: 3\n", "settings.yaml")
    with pytest.raises(ConfigError, match=r"^-p overrides=\{epochs: 2, epochs: 3\}: key 'epochs' is given twice"):
        coerce_value("overrides", "{epochs: 2, epochs: 3}", "dict", "-p")


def test_a_settings_file_with_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 2\nlr: 0.1\nepochs: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}: key 'epochs' is given twice \(line 3\); give it once$"):
        load_settings_file(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a settings file"):
        load_settings_file(path)


@pytest.mark.parametrize(("setting", "says"), [
    ("seed=-1", "setting seed=-1: must be 0 or more"),
    ("seed=99999999999", r"setting seed=99999999999: too large \(at most 2147483647\)"),
    ("epochs=1e12", r"setting epochs=1e12: too large"),
    ("epochs=2.5", r"setting epochs=2.5: expected int \(a whole number\), got 2.5"),
    ("epochs=nan", r"setting epochs=nan: expected int \(a whole number\), got nan"),
    ("epochs=three", r"setting epochs=three: expected int \(a whole number\), got text"),
    ("epochs=", r"setting epochs=: empty; expected int \(a whole number\)"),
    ("threads=100000", "setting threads=100000: at most 1024"),
    ("input_size=65536", "setting input_size=65536: at most 8192"),
    ("num_workers=100000", "setting num_workers=100000: at most 256"),
])
def test_out_of_range_and_mistyped_settings_are_one_line_errors(setting, says):
    with pytest.raises(ConfigError, match=f"^{says}") as info:
        make_config("smoke", parse_assignments([setting]))
    assert "\n" not in str(info.value)


def test_a_whole_number_in_any_notation_is_an_int():
    cfg = make_config("smoke", parse_assignments(["epochs=1e3", "batch_size=2.0"]))
    assert (cfg.epochs, cfg.batch_size) == (1000, 2)
    assert type(cfg.epochs) is int


def test_a_saved_config_is_checked_field_by_field():
    saved = make_config("smoke").to_dict()
    assert config_from_dict(saved) == make_config("smoke")
    assert config_from_dict({k: v for k, v in saved.items() if k != "ema_decay"}).ema_decay == 0.0  # added later
    bad = [({**saved, "threshold": 1.5}, "threshold=1.5: must be between 0 and 1"),
           ({**saved, "epochs": "5"}, r"epochs='5': expected int \(a whole number\), got text"),
           ({**saved, "model": 3}, r"model=3: expected str \(text\), got a whole number"),
           ({**saved, "lr": float("nan")}, "lr=nan: must be a finite number"),
           ({**saved, "seed": -1}, "seed=-1: must be 0 or more"),
           ({**saved, "newer": 1}, r"unknown setting\(s\) newer \(written by a newer seglib\?\)"),
           (["epochs"], r"not a mapping of settings \(found list\)")]
    for data, says in bad:
        with pytest.raises(ConfigError, match=f"^best.pt: (setting )?{says}"):
            config_from_dict(data, "best.pt")


def test_validate_refuses_a_config_built_with_wrong_types():
    with pytest.raises(ConfigError, match=r"setting amp='yes': expected bool"):
        validate(TrainConfig(amp="yes"))


# ------------------------------------------------------------------ saved configs: every field and a schema version


def test_a_saved_config_holds_every_setting_and_its_schema_version():
    from seglib.settings import CONFIG_SCHEMA, SCHEMA_KEY, config_yaml

    cfg = make_config("smoke", {"lr": 0.02})
    saved = load_yaml(config_yaml(cfg), "config.yaml")
    assert saved == cfg.to_saved_dict() == {SCHEMA_KEY: CONFIG_SCHEMA, **cfg.to_dict()}
    assert config_from_dict(saved) == cfg


def test_a_config_of_the_current_schema_must_hold_every_setting():
    from seglib.settings import CONFIG_SCHEMA

    saved = make_config("smoke").to_saved_dict()
    del saved["geometry"], saved["epochs"]
    with pytest.raises(ConfigError, match=rf"^best.pt: setting\(s\) geometry, epochs missing; a config of schema "
                                          rf"{CONFIG_SCHEMA} holds every one"):
        config_from_dict(saved, "best.pt")


def test_an_older_config_gets_the_values_its_run_trained_with_not_todays_defaults(monkeypatch):
    """A config saved before a setting existed takes ADDED_SETTINGS' value, whatever the default is now; a setting
    such a config always held is still required."""
    from seglib import settings

    old = {k: v for k, v in make_config("smoke").to_dict().items() if k not in settings.ADDED_SETTINGS}
    filled = config_from_dict(old)
    assert {k: getattr(filled, k) for k in settings.ADDED_SETTINGS} == {k: v for k, (_, v) in
                                                                         settings.ADDED_SETTINGS.items()}
    monkeypatch.setitem(settings.ADDED_SETTINGS, "ema_decay", (2, 0.5))  # as if EMA had been on before the setting
    assert config_from_dict(old).ema_decay == 0.5 != TrainConfig.ema_decay
    del old["epochs"]
    with pytest.raises(ConfigError, match=r"setting\(s\) epochs missing; a config of schema 1"):
        config_from_dict(old)


@pytest.mark.parametrize(("version", "says"), [(settings.CONFIG_SCHEMA + 1, f"config_schema={settings.CONFIG_SCHEMA + 1} is "
                                               f"newer than this seglib reads ({settings.CONFIG_SCHEMA})"),
                                               ("2", "config_schema='2': expected a whole number"),
                                               (0, "config_schema=0: expected a whole number, 1 or more")])
def test_a_newer_or_malformed_schema_version_is_refused(version, says):
    saved = {**make_config("smoke").to_saved_dict(), "config_schema": version}
    with pytest.raises(ConfigError, match=f"^best.pt: {re.escape(says)}"):
        config_from_dict(saved, "best.pt")


def test_every_setting_newer_than_the_oldest_committed_config_has_a_value_before_it():
    """The oldest reference checkpoint's config lacks exactly settings that ADDED_SETTINGS fills in."""
    import torch

    from seglib.infra.paths import PROJECT_ROOT
    from seglib.settings import ADDED_SETTINGS, CONFIG_SCHEMA

    path = PROJECT_ROOT / "reports" / "reference" / "best.pt"
    if not path.is_file():
        pytest.skip("no committed reference checkpoint in this checkout")
    saved = torch.load(path, weights_only=True)["config"]
    assert "config_schema" not in saved
    lacking = set(TrainConfig.__dataclass_fields__) - set(saved)
    assert lacking and lacking <= set(ADDED_SETTINGS) <= set(TrainConfig.__dataclass_fields__)
    assert all(1 < since <= CONFIG_SCHEMA for since, _ in ADDED_SETTINGS.values())


# ------------------------------------------------------------------ each choice written once

# Words that are choices and also ordinary words elsewhere in the package, with another meaning there: counted only
# in the modules that read their setting.
OTHER_MEANINGS = {"none": "encoder_weights=none, no value", "constant": "ONNX's constant padding mode"}
READERS = ("settings.py", "transforms/pipelines.py", "training/parts.py", "notebook.py")


def _string_constants(path) -> list[str]:
    """The strings a module writes as code: docstrings and other bare strings are prose, comments are not in the tree."""
    tree = ast.parse(path.read_text())
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose]


def test_each_choice_name_is_written_once_in_the_package():
    """Augmentation levels, schedules, geometries (seglib.settings) and model names (the model registry): each name
    is one string constant in seglib/; the profiles and the modules that implement a choice use the constants."""
    package = PROJECT_ROOT / "seglib"
    constants = {str(path.relative_to(package)): _string_constants(path) for path in sorted(package.rglob("*.py"))}
    choices = (*settings.AUGMENTATIONS, *settings.SCHEDULES, *settings.GEOMETRIES, *MODELS)
    counts = {name: sum(found.count(name) for module, found in constants.items()
                        if name not in OTHER_MEANINGS or module in READERS) for name in choices}
    assert counts == dict.fromkeys(choices, 1)


def test_a_profile_lists_only_what_it_changes_from_the_defaults():
    defaults = TrainConfig()
    assert PROFILES["cpu-scratch"] == {}
    assert all(value != getattr(defaults, key) for changes in PROFILES.values() for key, value in changes.items())
