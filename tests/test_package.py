"""The package itself: offline import, CLI entry points, version."""

from __future__ import annotations

import os
import subprocess
import sys


def test_import_sets_no_albumentations_update_before_albumentations_loads():
    code = ("import os, sys; import seglib.transforms; "
            "print(os.environ.get('NO_ALBUMENTATIONS_UPDATE'), 'albumentations' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["1", "True"]


def test_python_dash_m_and_console_script():
    out = subprocess.run([sys.executable, "-m", "seglib", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("seglib ")
    script = os.path.join(os.path.dirname(sys.executable), "seglib")
    assert subprocess.run([script, "--help"], capture_output=True, text=True).returncode == 0


def test_unknown_command_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "seglib", "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_make_help_lists_every_profile_and_writes_plain_text_to_a_file(tmp_path):
    """`make help > file` holds no colour codes and no unexpanded `$$`; `reports` names every profile."""
    import shutil

    from seglib.config import PROJECT_ROOT
    from seglib.settings import PROFILE_NAMES

    if shutil.which("make") is None:
        import pytest

        pytest.skip("make not installed")
    out = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), "help"], capture_output=True, text=True,
                         check=True).stdout
    assert "\x1b[" not in out and "$$" not in out
    reports_line = next(line for line in out.splitlines() if line.strip().startswith("reports "))
    assert all(name in reports_line for name in PROFILE_NAMES)


def test_train_help_says_which_network_each_profile_trains():
    out = subprocess.run([sys.executable, "-m", "seglib", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "train a U-Net" not in out and "MediaPipe" in out and "cpu-scratch" in out


def test_seglib_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "seglib", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("data", "train", "evaluate", "predict", "export", "report", "anchor", "bench", "experiments"):
        assert f"    {command} " in out or f"    {command}\n" in out, command
