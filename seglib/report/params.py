"""Notebook parameters for a batch: which notebooks, which parameters each declares, and the values each gets
(checked before anything runs)."""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglib.infra import paths
from seglib.infra.errors import ConfigError, SeglibError
from seglib.infra.values import parse_assignments
from seglib.notebook import check_parameter, coerce_parameter
from seglib.report.html import DropMessages

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
    folder = Path(notebooks_dir) if notebooks_dir is not None else paths.notebooks_dir()
    found = sorted(p for p in folder.glob(NOTEBOOK_PATTERN) if p.is_file())
    if not found:
        raise SeglibError(f"{folder}: no numbered notebooks ({NOTEBOOK_PATTERN}) found")
    return [p.resolve() for p in found]


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParam]:
    """Names, type hints, defaults and help of the cell tagged `parameters` ({} when there is none), as
    papermill's own inspector reads them (`papermill.inspect_notebook`, what `papermill --help-notebook` shows).

    A name the cell assigns but papermill cannot read (it skips a line whose comment holds a second `=`) is a
    SeglibError: papermill would silently ignore `-p NAME` for it.
    """
    import nbformat
    import papermill

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user problem
        raise SeglibError(f"{path.name}: not a readable notebook ({exc})") from None
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        return {}
    quiet = DropMessages("Unable to parse line")
    logger = logging.getLogger("papermill.translators")
    logger.addFilter(quiet)
    try:
        found = papermill.inspect_notebook(str(path))
    finally:
        logger.removeFilter(quiet)
    unread = [name for name in _assigned_names(cells[0].source) if name not in found]
    if unread:
        raise SeglibError(f"{path.name}: papermill cannot read the parameter line of {', '.join(unread)} "
                          "(keep '=' out of its comment)")
    params = {}
    for name, info in found.items():
        hint = info.get("inferred_type_name") or ""
        try:
            default = ast.literal_eval(info.get("default") or "None")
        except (ValueError, SyntaxError):
            default = None
        params[name] = NotebookParam(name, "" if hint == "None" else hint, default, info.get("help", ""))
    return params


def _assigned_names(source: str) -> list[str]:
    """Names a cell assigns at its top level (empty when it is not plain Python)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for stmt in tree.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.append(stmt.target.id)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names.append(stmt.targets[0].id)
    return names


def parse_param_args(items: list[str] | None) -> dict[str, str]:
    """['key=value', ...] from `-p` into {key: raw text} (typed later against the notebooks' hints)."""
    return parse_assignments(items, "-p")


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
    if overrides:  # training settings: an unknown key or a bad value fails now, not once training is under way
        from seglib.profiles import make_config

        try:
            make_config(profile, overrides[0])
        except ConfigError as exc:
            raise ConfigError(f"-p overrides: {exc}") from None
    return out
