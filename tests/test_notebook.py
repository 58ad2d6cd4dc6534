"""seglib.notebook: parameter resolution and how user errors look inside Jupyter."""

from __future__ import annotations

import re

import pytest

from seglib.infra.errors import ConfigError, SeglibError
from seglib.notebook import resolve_params, show_user_errors_briefly

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _python_kernel() -> str:
    """The Jupyter kernel the notebook tests run with (the project's, else python3); skips when there is none."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = KernelSpecManager().find_kernel_specs()
    kernel = next((k for k in ("seglib", "python3") if k in kernels), None)
    if kernel is None:
        pytest.skip("no Python Jupyter kernel installed")
    return kernel


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
    result = shell.run_cell("from seglib.infra.errors import DataError\n"
                            "raise DataError('data/raw/x.jpg: truncated JPEG')")
    assert isinstance(result.error_in_exec, SeglibError)  # papermill and nbval still see a failed cell
    out = ANSI.sub("", capsys.readouterr().out).strip()
    assert out == "seglib: error: data/raw/x.jpg: truncated JPEG"
    shell.run_cell("raise ValueError('a bug')")  # not a user error: the full traceback stays
    assert "Traceback" in ANSI.sub("", capsys.readouterr().out)


def test_notebook_entry_point_with_an_untrained_run_fails_with_one_line(tmp_path, monkeypatch):
    """A new user opens notebook 04 before training: one line saying how to train, no traceback."""
    papermill = pytest.importorskip("papermill")
    from seglib.infra.paths import notebooks_dir

    kernel = _python_kernel()
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(notebooks_dir() / "04_evaluate_iou.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "run": "never-trained"}, kernel_name=kernel,
                                   progress_bar=False, cwd=str(notebooks_dir()))
    lines = [ANSI.sub("", line) for line in info.value.traceback]
    assert len(lines) == 1 and lines[0].startswith("seglib: error: run 'never-trained' not found"), lines


# case 1 of the new-user trial: papermill passes `-p retrain false` as the text "false"
def test_check_parameters_types_papermill_text_by_the_hints():
    from seglib.notebook import check_parameters

    ns = {"__annotations__": {"retrain": bool, "n_examples": int, "overrides": dict, "splits": list,
                              "profile": str}, "retrain": "false", "n_examples": "3", "overrides": "{epochs: 2}",
          "splits": "[val]", "profile": "smoke", "unannotated": "false"}
    typed = check_parameters(ns)
    assert typed == {"retrain": False, "n_examples": 3, "overrides": {"epochs": 2}, "splits": ["val"],
                     "profile": "smoke"}
    assert ns["retrain"] is False and ns["unannotated"] == "false"
    for value in ("true", "True", True, "yes"):
        ns.update(retrain=value)
        check_parameters(ns)
        assert ns["retrain"] is True


@pytest.mark.parametrize(("name", "hint", "value", "says"), [
    ("retrain", bool, "maybe", "expected bool (true or false)"),
    ("retrain", bool, "1.5", "expected bool"),
    ("n_samples", int, "-5", "must be 1 or more"),
    ("n_samples", int, "many", "expected int"),
    ("splits", list, "[train]", "not an evaluated split"),
    ("splits", list, "[]", "give at least one of val, test"),
    ("profile", str, "fast", "expected one of"),
    ("run", str, "../elsewhere", "run name"),
])
def test_check_parameters_refuses_bad_values_naming_them(name, hint, value, says):
    from seglib.notebook import check_parameters

    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        check_parameters({"__annotations__": {name: hint}, name: value})
    assert f"parameter {name}=" in str(info.value)


def test_a_bad_profile_variable_is_named(monkeypatch):
    monkeypatch.setenv("SEGLIB_PROFILE", "fast")
    with pytest.raises(ConfigError, match=r"\$SEGLIB_PROFILE='fast' is not a profile"):
        resolve_params()
    monkeypatch.setenv("SEGLIB_PROFILE", "smoke")
    monkeypatch.setenv("SEGLIB_RUN", "a/b")
    with pytest.raises(ConfigError, match=r"\$SEGLIB_RUN: run name"):
        resolve_params()


def test_papermill_lists_every_parameter_of_every_notebook():
    """papermill's own inspector (`papermill --help-notebook`) reads each parameter line of our notebooks."""
    import papermill

    from seglib.infra.paths import notebooks_dir
    from seglib.report import notebook_parameters

    for path in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        ours = notebook_parameters(path)
        theirs = papermill.inspect_notebook(str(path))
        assert list(theirs) == list(ours), path.name
        for name, info in theirs.items():
            assert info["inferred_type_name"] == ours[name].type_name, (path.name, name)
            assert info["help"], (path.name, name)


def test_retrain_false_from_papermill_reuses_the_run(tmp_path, monkeypatch):
    """`papermill 03_train_unet.ipynb out.ipynb -p retrain false` must not retrain an existing run."""
    papermill = pytest.importorskip("papermill")
    from seglib.infra.paths import notebooks_dir
    from seglib.runs import Run

    kernel = _python_kernel()
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    run = Run.named("kept")
    run.dir.mkdir(parents=True)
    run.summary_file.write_text('{"best_val_iou": 0.5}')
    run.best.write_bytes(b"the user's trained model")
    for value in ("false", "maybe"):  # 'maybe' must be an error, not True
        with pytest.raises(papermill.PapermillExecutionError) as info:
            papermill.execute_notebook(str(notebooks_dir() / "03_train_unet.ipynb"), str(tmp_path / "out.ipynb"),
                                       parameters={"profile": "smoke", "run": "kept", "retrain": value},
                                       kernel_name=kernel, progress_bar=False, cwd=str(notebooks_dir()))
        lines = [ANSI.sub("", line) for line in info.value.traceback]
        # false: reused, then fails reading the fake config; maybe: refused before anything runs
        expected = "cannot read the settings" if value == "false" else "parameter retrain=maybe"
        assert any(expected in line for line in lines), lines
        assert run.best.read_bytes() == b"the user's trained model"


@pytest.mark.parametrize("run", ["", "  "])
def test_an_empty_run_name_is_refused_not_taken_for_the_default_run(run, monkeypatch):
    from seglib.notebook import check_parameters

    monkeypatch.setenv("SEGLIB_PROFILE", "smoke")
    with pytest.raises(ConfigError, match=r"an empty run name; give a name, or 'default'") as info:
        check_parameters({"__annotations__": {"run": str}, "run": run})  # papermill -p run ''
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"an empty run name"):
        resolve_params("smoke", run)
    assert resolve_params("smoke", "default").run == "smoke"


def test_an_empty_profile_is_refused_not_taken_for_the_default(monkeypatch):
    from seglib.notebook import check_parameters

    monkeypatch.setenv("SEGLIB_PROFILE", "smoke")
    with pytest.raises(ConfigError, match="parameter profile='': expected one of default, smoke"):
        check_parameters({"__annotations__": {"profile": str}, "profile": ""})
    with pytest.raises(ConfigError, match="profile '' unknown"):
        resolve_params("")
