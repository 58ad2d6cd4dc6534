"""Helpers the notebooks share: resolving their parameters and finding the run they work on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seglib import config
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
    name = resolve_profile(default_profile() if profile in ("", "default") else profile)
    run_name = (os.environ.get(ENV_RUN) or name) if run in ("", "default") else run
    from seglib.engine import run_dir_for

    return NotebookContext(profile=name, run=run_name, run_dir=run_dir_for(run_name),
                           data_dir=Path(data_dir).expanduser().resolve() if data_dir else None)


def project_root() -> Path:
    return config.PROJECT_ROOT
