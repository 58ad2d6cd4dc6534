"""The package itself: offline import, CLI entry points, version."""

from __future__ import annotations

import os
import subprocess
import sys


def test_import_sets_no_albumentations_update_before_albumentations_loads():
    code = ("import os, sys; import seglib.transforms.pipelines; "
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

    from seglib.infra.paths import PROJECT_ROOT
    from seglib.profiles import PROFILE_NAMES

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


def test_make_clean_reports_removes_generated_reports_and_no_committed_file(tmp_path):
    """On a fresh clone, `make clean-reports` deletes an ignored, generated report folder and leaves every
    committed file of reports/ (cv results, reference-256's checkpoint, ...) in place."""
    import shutil

    import pytest

    from seglib.infra.paths import PROJECT_ROOT

    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("make or git not installed")
    if subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{PROJECT_ROOT}", str(clone)], check=True)
    generated = clone / "reports" / "some-run" / "index.html"
    generated.parent.mkdir(parents=True)
    generated.write_text("<html></html>")
    subprocess.run(["make", "-s", "-C", str(clone), "clean-reports"], check=True, capture_output=True)
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert not generated.exists()
    assert [line for line in status.splitlines() if line[:2].strip() == "D"] == []


def test_no_measured_figure_in_a_code_comment():
    """Measurements live in the experiment log and the generated docs, where they do not go stale: no comment in
    seglib quotes a time, a speed-up, a size or an IoU (a decimal with a unit, or a score with three decimals)."""
    import io
    import re
    import tokenize

    from seglib.infra.paths import PROJECT_ROOT

    measured = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|min|minutes|seconds|hours|x|%|img/s|MB|GB|GiB|MiB)(?![\w/])"
                          r"|\b0\.\d{3,}\b")
    found = []
    for path in sorted((PROJECT_ROOT / "seglib").rglob("*.py")):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type == tokenize.COMMENT and measured.search(token.string):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{token.start[0]}: {token.string.strip()}")
    assert found == []


def test_the_command_line_answers_without_importing_numpy_pandas_or_torch():
    """`seglib --help`, every `seglib COMMAND --help` and a usage error import no heavy library: they answer at
    once (the heavy modules are imported inside the command that needs them)."""
    code = ("import sys, contextlib, io\n"
            "from seglib.cli import build_parser, COMMANDS\n"
            "parser = build_parser()\n"
            "for argv in [['--help']] + [[c.__name__.rsplit('.', 1)[1], '--help'] for c in COMMANDS] + [['train']]:\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            "        parser.parse_args(argv)\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'PIL', 'albumentations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_setup_passes_pips_package_sources_on_to_uv():
    """`make setup` installs with uv from the indexes, wheel folders and constraints pip is configured with."""
    import importlib.util

    from seglib.infra.paths import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("uv_pip_args", PROJECT_ROOT / "tools" / "uv_pip_args.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    settings = [("find-links", "/opt/wheels"), ("extra-index-url", "file:///a/simple file:///b/simple"),
                ("constraint", "/etc/c.txt"), ("cert", "/etc/ca.crt"), ("find-links", "/opt/wheels")]
    assert tool.uv_args(settings) == ["--index-strategy", "unsafe-best-match", "--find-links", "/opt/wheels",
                                      "--extra-index-url", "file:///a/simple", "--extra-index-url",
                                      "file:///b/simple", "--constraint", "/etc/c.txt"]
    env = {**os.environ, "PIP_FIND_LINKS": "/srv/wheels /srv/more", "PIP_CONFIG_FILE": os.devnull}
    out = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "uv_pip_args.py")], capture_output=True,
                         text=True, env=env, check=True)
    assert "--find-links /srv/wheels --find-links /srv/more" in out.stdout  # a list, split as pip splits it
