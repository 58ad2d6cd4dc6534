"""Helpers the notebooks share: resolving their parameters and finding the run they work on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seglib import config
from seglib.errors import SeglibError
from seglib.settings import default_profile, resolve_profile

ENV_RUN = "SEGLIB_RUN"


@dataclass(frozen=True)
class NotebookContext:
    """Resolved notebook parameters: the profile, the run name and folder, the data set folder."""

    profile: str
    run: str
    run_dir: Path
    data_dir: Path | None


def resolve_params(profile: str = "default", run: str = "default", data_dir: str = "") -> NotebookContext:
    """Turn a notebook's literal parameters into concrete values.

    profile "default" -> $SEGLIB_PROFILE (CI sets smoke), else auto; auto -> gpu with CUDA, else cpu.
    run "default" -> $SEGLIB_RUN, else the resolved profile's name. data_dir "" -> $SEGLIB_DATA_DIR or data/raw.
    """
    show_user_errors_briefly()
    name = resolve_profile(default_profile() if profile in ("", "default") else profile)
    run_name = (os.environ.get(ENV_RUN) or name) if run in ("", "default") else run
    from seglib.engine import run_dir_for

    return NotebookContext(profile=name, run=run_name, run_dir=run_dir_for(run_name),
                           data_dir=Path(data_dir).expanduser().resolve() if data_dir else None)


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


def project_root() -> Path:
    return config.PROJECT_ROOT
