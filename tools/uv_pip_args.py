"""Print the `uv pip install` options that give the package sources pip is configured with.

`make setup` installs with uv when it can (it unpacks the wheels in parallel: PyTorch's CUDA build with its
NVIDIA libraries is several GB) and with pip otherwise. uv reads no pip configuration, so the index URLs, local
wheel folders and constraint files of pip.conf and PIP_* variables are passed on here, and uv takes the best
version across all indexes as pip does. Usage: `python tools/uv_pip_args.py` (standard library only; the
output is quoted for the shell).
"""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys

OPTIONS = {  # pip configuration key -> uv pip install option
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_config() -> list[tuple[str, str]]:
    """(key, value) of every setting `pip config list` shows, environment variables included."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=False).stdout
    settings = []
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        settings.append((name.rpartition(".")[2], str(value)))
    return settings


def uv_args(settings: list[tuple[str, str]]) -> list[str]:
    """The uv options for pip's settings: each value of a list setting once, in the order pip shows them."""
    args = ["--index-strategy", "unsafe-best-match"]
    seen = set()
    for key, value in settings:
        if key == "no-index" and value.lower() in ("1", "true", "yes", "on"):
            args.append("--no-index")
        if key not in OPTIONS:
            continue
        for item in value.split():
            if (key, item) not in seen:
                seen.add((key, item))
                args += [OPTIONS[key], item]
    return args


if __name__ == "__main__":
    print(shlex.join(uv_args(pip_config())))
