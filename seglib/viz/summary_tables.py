"""Small display tables: key/value facts and a run's settings against its profile's."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def format_value(value) -> str:
    """A setting's value as table text: floats to six significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def key_value_table(mapping: Mapping, key: str = "item", value: str = "value") -> pd.DataFrame:
    """A dict as a two-column table (values as text, so mixed types display cleanly)."""
    return pd.DataFrame({key: list(mapping), value: [format_value(v) for v in mapping.values()]}).set_index(key)


def config_table(cfg, base=None, base_name: str = "profile_default") -> pd.DataFrame:
    """A TrainConfig (or dict) as a table; with `base` (e.g. the profile's defaults) a column marks changes."""
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    out = pd.DataFrame({"setting": list(values), "value": [format_value(v) for v in values.values()]})
    if base is not None:
        defaults = base.to_dict() if hasattr(base, "to_dict") else dict(base)
        out[base_name] = [format_value(defaults.get(k, "")) for k in values]
        out["changed"] = ["yes" if k in defaults and defaults[k] != v else "" for k, v in values.items()]
    return out.set_index("setting")
