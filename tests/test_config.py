"""seglib.config: paths defined once, moved by environment variables, shown relative to the project."""

from __future__ import annotations

from seglib import config


def test_environment_variables_move_the_output_folders(tmp_path, monkeypatch):
    for name, getter in ((config.ENV_RUNS_DIR, config.runs_dir), (config.ENV_REPORTS_DIR, config.reports_dir),
                         (config.ENV_DATA_DIR, config.raw_data_dir)):
        monkeypatch.setenv(name, str(tmp_path / name))
        assert getter() == tmp_path / name
        monkeypatch.delenv(name)
        assert str(getter()).startswith(str(config.PROJECT_ROOT))


def test_display_path_is_project_relative_inside_and_absolute_outside(tmp_path):
    assert config.display_path(config.PROJECT_ROOT / "runs" / "x" / "best.pt") == "runs/x/best.pt"
    assert config.display_path(config.PROJECT_ROOT) == "."
    assert config.display_path(tmp_path / "a") == str(tmp_path / "a")


def test_a_path_with_an_unknown_home_folder_is_one_line():
    """pathlib raises RuntimeError for '~nosuchuser'; seglib names the path instead (found by tests/test_fuzz.py)."""
    import pytest

    from seglib.config import display_path, user_path
    from seglib.errors import ConfigError

    with pytest.raises(ConfigError, match="~nosuchuser0/x: no home folder"):
        user_path("~nosuchuser0/x")
    assert display_path("~nosuchuser0/x") == "~nosuchuser0/x"
    assert user_path("plain/x").as_posix() == "plain/x"
