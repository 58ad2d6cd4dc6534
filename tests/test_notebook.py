"""seglib.notebook: parameter resolution and how user errors look inside Jupyter."""

from __future__ import annotations

import re

import pytest

from seglib.errors import ConfigError, SeglibError
from seglib.notebook import resolve_params, show_user_errors_briefly

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_outside_ipython_nothing_is_installed():
    assert show_user_errors_briefly() is False


def test_params_resolve_defaults_and_reject_a_bad_profile(monkeypatch):
    monkeypatch.setenv("SEGLIB_PROFILE", "smoke")
    monkeypatch.delenv("SEGLIB_RUN", raising=False)
    ctx = resolve_params()
    assert (ctx.profile, ctx.run, ctx.data_dir) == ("smoke", "smoke", None)
    assert resolve_params("cpu", "mine").run_dir.name == "mine"
    with pytest.raises(ConfigError, match="profile 'fast' unknown"):
        resolve_params("fast")


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    yield ip
    InteractiveShell.clear_instance()


def test_seglib_errors_show_one_line_in_ipython_and_the_cell_still_fails(shell, capsys):
    assert show_user_errors_briefly() is True
    result = shell.run_cell("from seglib.errors import DataError\n"
                            "raise DataError('data/raw/x.jpg: truncated JPEG')")
    assert isinstance(result.error_in_exec, SeglibError)  # papermill and nbval still see a failed cell
    out = ANSI.sub("", capsys.readouterr().out).strip()
    assert out == "seglib: error: data/raw/x.jpg: truncated JPEG"
    shell.run_cell("raise ValueError('a bug')")  # not a user error: the full traceback stays
    assert "Traceback" in ANSI.sub("", capsys.readouterr().out)


def test_notebook_entry_point_with_an_untrained_run_fails_with_one_line(tmp_path, monkeypatch):
    """A new user opens notebook 04 before training: one line saying how to train, no traceback."""
    papermill = pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager

    from seglib.config import notebooks_dir

    kernels = KernelSpecManager().find_kernel_specs()
    kernel = next((k for k in ("seglib", "python3") if k in kernels), None)
    if kernel is None:
        pytest.skip("no Python Jupyter kernel installed")
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(notebooks_dir() / "04_evaluate_iou.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "run": "never-trained"}, kernel_name=kernel,
                                   progress_bar=False, cwd=str(notebooks_dir()))
    lines = [ANSI.sub("", line) for line in info.value.traceback]
    assert len(lines) == 1 and lines[0].startswith("seglib: error: run never-trained not trained yet"), lines
