"""Notebook parameters: typed and checked the same way in the kernel and by the report runner, then resolved
into the profile, run and data folder the notebook works on."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.logs import show_messages
from seglib.infra.paths import EVAL_SPLITS, user_path
from seglib.infra.values import AT_LEAST_ONE, NOT_NEGATIVE, Rule, check_value, coerce_value, one_of
from seglib.profiles import PROFILE_NAMES, default_profile, resolve_profile
from seglib.runs import Run, check_run_name
from seglib.settings import AUGMENTATIONS


def _eval_splits(value) -> str:
    if not value:
        return "give at least one of val, test"
    bad = [v for v in value if v not in EVAL_SPLITS]
    return f"{', '.join(map(str, bad))}: not an evaluated split (val, test)" if bad else ""


def _run_name(value) -> str:
    if value == "default":
        return ""
    if not str(value).strip():
        return EMPTY_RUN
    try:
        check_run_name(value)
    except ConfigError as exc:
        return str(exc)
    return ""


EMPTY_RUN = "an empty run name; give a name, or 'default' for $SEGLIB_RUN, else the profile's name"


def _external_set(value) -> str:
    """A set that notebook 04 can score: "" (none), a registered set's name, or a pairs CSV / IMAGES:MASKS that
    can be read now (so that a batch stops before training, not at notebook 04)."""
    from seglib.data.descriptions import NAME_PATTERN, registered
    from seglib.data.registry import scored_set

    if not value or (NAME_PATTERN.fullmatch(str(value)) and str(value) in registered()):
        return ""
    try:
        scored_set(str(value))
    except SeglibError as exc:
        return str(exc)
    return ""


# What a value must satisfy beyond its type, by parameter name (the same name means the same thing everywhere);
# the rules are the settings' own (`seglib.settings`), where a parameter is one.
PARAMETER_RULES: dict[str, Rule] = {
    "profile": one_of("default", *PROFILE_NAMES),
    "run": _run_name,
    "augment": one_of("default", "", *AUGMENTATIONS),
    "n_samples": AT_LEAST_ONE,
    "n_images": AT_LEAST_ONE,
    "n_augmented": AT_LEAST_ONE,
    "n_examples": AT_LEAST_ONE,
    "k": AT_LEAST_ONE,
    "seed": NOT_NEGATIVE,
    "splits": _eval_splits,
    "external": _external_set,
}


def coerce_parameter(name: str, value: Any, type_name: str) -> Any:
    """A parameter value as its declared type (`infra.values.coerce_value`, the same rule as `--set`)."""
    return coerce_value(name, value, type_name, "parameter")


def check_parameter(name: str, value: Any) -> None:
    """ConfigError when a (typed) value breaks its rule in PARAMETER_RULES."""
    check_value(name, value, (PARAMETER_RULES[name],) if name in PARAMETER_RULES else (), "parameter")


def check_parameters(namespace: MutableMapping[str, Any]) -> dict[str, Any]:
    """Type and check every annotated parameter in a notebook's namespace (`check_parameters(globals())`).

    Papermill injects `-p` values as text or as its own guess of a type (`-p retrain false` arrives as the
    text "false"); here each one is converted to its declared type hint (`retrain: bool`) and checked, so a
    value that is not a bool is an error and "false" is False. The typed values are written back; returns them.
    """
    show_user_errors_briefly()
    show_messages()  # the core's progress lines in the cell's output
    hints = namespace.get("__annotations__", {})
    typed = {}
    for name, hint in hints.items():
        if name not in namespace:
            continue
        type_name = hint.__name__ if isinstance(hint, type) else str(hint)
        typed[name] = coerce_parameter(name, namespace[name], type_name)
        check_parameter(name, typed[name])
    namespace.update(typed)
    return typed

ENV_RUN = "SEGLIB_RUN"


@dataclass(frozen=True)
class NotebookContext:
    """Resolved notebook parameters: the profile, the run name and folder, the data set folder."""

    profile: str
    run: str
    run_dir: Path
    data_dir: Path | None

    @property
    def run_folder(self) -> Run:
        return Run(self.run_dir)

    @property
    def data(self) -> str:
        """The registered set(s) the run trained on, from its config.yaml (the built-in set for older runs, and for
        a run folder that holds a checkpoint only)."""
        saved = self.run_folder.config() if self.run_folder.config_file.is_file() else {}
        return str((saved or {}).get("data") or "human-seg")


def resolve_params(profile: str = "default", run: str = "default", data_dir: str = "") -> NotebookContext:
    """Turn a notebook's literal parameters into concrete values.

    profile "default" -> $SEGLIB_PROFILE (CI sets smoke), else auto; auto -> gpu with CUDA, else cpu.
    run "default" -> $SEGLIB_RUN, else the resolved profile's name. data_dir "" -> $SEGLIB_DATA_DIR or data/raw.
    """
    show_user_errors_briefly()
    if not str(run).strip():  # "" is a mistake (an unset shell variable), not a request for the default run
        raise ConfigError(f"run {run!r}: {EMPTY_RUN}")
    name = resolve_profile(default_profile() if profile == "default" else profile)
    if run == "default":
        run_name = os.environ.get(ENV_RUN, "").strip() or name
        source = f"${ENV_RUN}"
    else:
        run_name, source = run, "run"
    try:
        run_obj = Run.named(run_name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return NotebookContext(profile=name, run=run_name, run_dir=run_obj.dir,
                           data_dir=user_path(data_dir).resolve() if data_dir else None)


def _one_line(shell, etype, value, tb, tb_offset=None) -> list[str]:
    # IPython leaves the showing to the handler; _showtraceback is where the kernel publishes an error output
    stb = [f"seglib: error: {value}"]
    shell._showtraceback(etype, value, stb)
    return stb


def show_user_errors_briefly() -> bool:
    """In Jupyter/IPython, show a SeglibError (bad input, missing run, ...) as one line instead of a traceback.

    The cell still fails (papermill and nbval see the error); other exceptions keep their traceback.
    Returns False outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((SeglibError,), _one_line)
    return True
