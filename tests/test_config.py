"""seglib.infra.paths: paths defined once, moved by environment variables, shown relative to the project."""

from __future__ import annotations

from seglib.data import external
from seglib.infra import paths


def test_environment_variables_move_the_output_folders(tmp_path, monkeypatch):
    for name, getter in ((paths.ENV_RUNS_DIR, paths.runs_dir), (paths.ENV_REPORTS_DIR, paths.reports_dir),
                         (paths.ENV_DATA_DIR, paths.raw_data_dir)):
        monkeypatch.setenv(name, str(tmp_path / name))
        assert getter() == tmp_path / name
        monkeypatch.delenv(name)
        assert str(getter()).startswith(str(paths.PROJECT_ROOT))


def test_display_path_is_project_relative_inside_and_absolute_outside(tmp_path):
    assert paths.display_path(paths.PROJECT_ROOT / "runs" / "x" / "best.pt") == "runs/x/best.pt"
    assert paths.display_path(paths.PROJECT_ROOT) == "."
    assert paths.display_path(tmp_path / "a") == str(tmp_path / "a")


def test_a_path_with_an_unknown_home_folder_is_one_line():
    """pathlib raises RuntimeError for '~nosuchuser'; seglib names the path instead (found by tests/test_fuzz.py)."""
    import pytest

    from seglib.infra.errors import ConfigError
    from seglib.infra.paths import display_path, user_path

    with pytest.raises(ConfigError, match="~nosuchuser0/x: no home folder"):
        user_path("~nosuchuser0/x")
    assert display_path("~nosuchuser0/x") == "~nosuchuser0/x"
    assert user_path("plain/x").as_posix() == "plain/x"


FOLDER_VARIABLES = [paths.ENV_RUNS_DIR, paths.ENV_REPORTS_DIR, paths.ENV_DATASETS_DIR, paths.ENV_DATA_DIR,
                    external.ENV_PENNFUDAN_DIR]


def test_a_folder_variable_naming_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    import pytest

    from seglib.data.external import pennfudan_dir
    from seglib.infra.errors import ConfigError

    getters = {paths.ENV_RUNS_DIR: paths.runs_dir, paths.ENV_REPORTS_DIR: paths.reports_dir,
               paths.ENV_DATASETS_DIR: paths.datasets_dir, paths.ENV_DATA_DIR: paths.raw_data_dir,
               external.ENV_PENNFUDAN_DIR: pennfudan_dir}
    afile = tmp_path / "afile"
    afile.write_text("x")
    for name in FOLDER_VARIABLES:
        monkeypatch.setenv(name, str(afile))
        with pytest.raises(ConfigError, match=rf"^\${name}={afile}: is a file, not a folder"):
            getters[name]()
        monkeypatch.setenv(name, str(afile / "sub"))
        with pytest.raises(ConfigError, match=rf"^\${name}={afile}/sub: is under {afile}, which is a file"):
            getters[name]()
        monkeypatch.setenv(name, str(tmp_path / "new"))  # a folder not made yet: commands that write make it
        assert getters[name]() in (tmp_path / "new", tmp_path / "new" / "PennFudanPed")
        monkeypatch.delenv(name)


def test_commands_given_a_folder_variable_naming_a_file_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    from conftest import photo_folders

    from seglib.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    images, masks = photo_folders(tmp_path / "mine", n=2)
    monkeypatch.setenv(paths.ENV_DATASETS_DIR, str(tmp_path / "datasets"))
    for name, argv in ((paths.ENV_RUNS_DIR, ["train", "--profile", "smoke", "--run", "x"]),
                       (paths.ENV_DATASETS_DIR, ["data", "add", "mine", "--images", str(images), "--masks",
                                                  str(masks)])):
        monkeypatch.setenv(name, str(afile))
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"seglib: error: ${name}={afile}: is a file, not a folder; point it at a folder (or unset it)\n"
    assert afile.read_text() == "x" and not (tmp_path / "datasets").exists()


def test_data_list_notes_a_datasets_folder_that_does_not_exist(tmp_path, monkeypatch, capsys):
    from seglib.cli import main

    monkeypatch.setenv(paths.ENV_DATASETS_DIR, str(tmp_path / "missing"))
    assert main(["data", "list"]) == 0
    captured = capsys.readouterr()
    assert "human-seg" in captured.out
    assert captured.err == (f"seglib: note: ${paths.ENV_DATASETS_DIR}={tmp_path / 'missing'}: no such folder; "
                            "only the built-in sets are listed (seglib data add NAME creates it)\n")
