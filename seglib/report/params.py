"""Notebook parameters for a batch: which notebooks, which parameters each declares, and the values each gets
(checked before anything runs)."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglib import config
from seglib.errors import ConfigError, SeglibError
from seglib.notebook import TYPES, check_parameter, coerce_parameter

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"


# Set by the runner itself (from --profile, --run, --data-dir), never through -p.
RESERVED = {"profile": "--profile", "run": "--run", "data_dir": "--data-dir"}


@dataclass(frozen=True)
class NotebookParam:
    """One name assigned in a notebook's `parameters` cell."""

    name: str
    type_name: str  # the type hint ("int", "str", ...), else the literal default's type, else ""
    default: Any = None
    help: str = ""


def find_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`), in order."""
    folder = Path(notebooks_dir) if notebooks_dir is not None else config.notebooks_dir()
    found = sorted(p for p in folder.glob(NOTEBOOK_PATTERN) if p.is_file())
    if not found:
        raise SeglibError(f"{folder}: no numbered notebooks ({NOTEBOOK_PATTERN}) found")
    return [p.resolve() for p in found]


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParam]:
    """Names, type hints, defaults and help of the cell tagged `parameters` ({} when there is none).

    Parsed with `ast`: papermill's own inspector (`papermill.inspect_notebook`) skips every line with a second
    `=` (e.g. `profile: str = "default"  # "default" = $SEGLIB_PROFILE`), which would hide real parameters.
    It is still used as a fallback for a cell that is not plain Python.
    """
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
        raise SeglibError(f"{path.name}: not a readable notebook ({exc})") from None
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    source = cells[0].source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _papermill_parameters(path)
    lines = source.splitlines()
    params: dict[str, NotebookParam] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name, hint, value = stmt.target.id, ast.unparse(stmt.annotation).strip("'\""), stmt.value
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, hint, value = stmt.targets[0].id, "", stmt.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        if not hint and default is not None and type(default).__name__ in TYPES:
            hint = type(default).__name__
        tail = lines[stmt.end_lineno - 1][stmt.end_col_offset:].strip()
        params[name] = NotebookParam(name, hint, default, tail[1:].strip() if tail.startswith("#") else "")
    return params


def _papermill_parameters(path: Path) -> dict[str, NotebookParam]:
    import papermill

    found = papermill.inspect_notebook(str(path))
    params = {}
    for name, info in found.items():
        hint = info.get("inferred_type_name") or ""
        params[name] = NotebookParam(name, "" if hint == "None" else hint, info.get("default"), info.get("help", ""))
    return params


def parse_param_args(items: list[str] | None) -> dict[str, str]:
    """['key=value', ...] from `-p` into {key: raw text} (typed later against the notebooks' hints)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE")
        out[key] = value.strip()
    return out


def coerce_param(name: str, value: Any, type_name: str, where: str = "") -> Any:
    """A `-p` value as the declared type and within its rule (`seglib.notebook`: the kernel uses the same code)."""
    try:
        value = coerce_parameter(name, value, type_name)
        check_parameter(name, value)
    except ConfigError as exc:
        place = f" (declared in {where})" if where else ""
        raise ConfigError(f"-p {str(exc).removeprefix('parameter ')}{place}") from None
    return value


def notebook_arguments(declared: Mapping[str, Mapping[str, NotebookParam]], base: Mapping[str, Any],
                       user: Mapping[str, Any] | None, profile: str) -> dict[str, dict[str, Any]]:
    """Per notebook: the parameters it gets (only those it declares). Validates every user parameter."""
    user = dict(user or {})
    known = sorted({name for params in declared.values() for name in params} - set(RESERVED))
    for name in user:
        if name in RESERVED:
            raise ConfigError(f"-p {name}: set it with {RESERVED[name]}, not -p")
        if name not in known:
            raise ConfigError(f"-p {name}: no notebook has a parameter {name!r}; valid names: "
                              f"{', '.join(known) or '(none)'}")
    out: dict[str, dict[str, Any]] = {}
    for nb_name, params in declared.items():
        args = {k: v for k, v in base.items() if k in params and v is not None}
        for name, value in user.items():
            if name in params:
                args[name] = coerce_param(name, value, params[name].type_name, nb_name)
        out[nb_name] = args
    overrides = [args["overrides"] for args in out.values() if isinstance(args.get("overrides"), dict)]
    if overrides:  # training settings: an unknown key or a bad value fails now, not 20 minutes in
        from seglib.settings import make_config

        try:
            make_config(profile, overrides[0])
        except ConfigError as exc:
            raise ConfigError(f"-p overrides: {exc}") from None
    return out
