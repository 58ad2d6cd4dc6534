"""Typed values from text, checked with one-line errors: the YAML a settings file, `--set` or `-p` gives (no key
twice), coerced to a declared type, and rules a value must meet. `seglib.settings` declares the settings with them;
notebook parameters use the same."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from seglib.infra.errors import ConfigError

# A rule takes a (typed) value and says what is wrong with it, "" when nothing is (notebook parameters use them too).
Rule = Callable[[Any], str]


def rule(ok: Callable[[Any], bool], says: str) -> Rule:
    return lambda value: "" if ok(value) else says


def at_most(limit: int) -> Rule:
    """The largest value that makes sense (a larger one only fails later, deep inside torch, numpy or the OS)."""
    return rule(lambda v: v <= limit, f"at most {limit}")


def one_of(*allowed: str) -> Rule:
    return rule(lambda v: v in allowed, f"expected one of {', '.join(allowed)}")


AT_LEAST_ONE = rule(lambda v: v >= 1, "must be 1 or more")
NOT_NEGATIVE = rule(lambda v: v >= 0, "must be 0 or more")
POSITIVE = rule(lambda v: v > 0, "must be positive")

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


def coerce_value(name: str, value: Any, type_name: str, what: str = "setting", read_text: bool = True) -> Any:
    """A value from the command line (`--set`, `-p`), papermill or a saved config as its declared type.

    With `read_text`, text is read as YAML (`5`, `0.1`, `false`, `[val]`, `{epochs: 5}`), except for str; a bool also
    takes 0/1, an int any whole number (`2.0`, `1e3`). A mismatch is a ConfigError "<what> <name>=<value>: expected
    <words>"."""
    raw = value if isinstance(value, str) and read_text else None
    if raw is not None:
        if type_name == "str" or type_name not in TYPES:
            return raw
        if not raw.strip():
            raise ConfigError(f"{what} {name}=: empty; expected {type_name} ({TYPE_WORDS[type_name]})")
        value = load_yaml(raw, f"{what} {name}={raw}")
    kind = TYPES.get(type_name)
    if kind is None:
        return value
    shown = raw if raw is not None else repr(value)
    if kind in (int, float) and isinstance(value, str) and raw is not None:
        with contextlib.suppress(ValueError):
            value = float(raw)  # YAML 1.1 reads "1e-3", "1e9" and "nan" as text
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{what} {name}={shown}: expected {type_name} (a whole number), got {value:g}")
        value = int(value)
    if kind is bool and type(value) is int and value in (0, 1):
        value = bool(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        got = GOT_WORDS.get(type(value).__name__, type(value).__name__)
        raise ConfigError(f"{what} {name}={shown}: expected {type_name} ({TYPE_WORDS[type_name]}), got {got}")
    if kind is int and not -MAX_INT <= value <= MAX_INT:
        raise ConfigError(f"{what} {name}={shown}: too large (at most {MAX_INT})")
    return value


def check_value(name: str, value: Any, rules: tuple[Rule, ...], what: str = "setting") -> None:
    """ConfigError "<what> <name>=<value>: <problem>" for the first rule the (typed) value breaks."""
    for check in rules:
        if problem := check(value):
            raise ConfigError(f"{what} {name}={value!r}: {problem}")


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
