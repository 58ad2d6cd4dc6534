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
