"""The documentation stays true: every Python example of the README and docs/ runs, every `seglib.…` name they
give imports, and docs/development.md's map of the package names each module that exists and no other."""

from __future__ import annotations

import importlib
import re
import shutil

import numpy as np
import pytest
from conftest import draw_pair
from PIL import Image

from seglib.infra.paths import PROJECT_ROOT

PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md")) + [PROJECT_ROOT / "README.md"]
EXAMPLE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
NAME = re.compile(r"`(seglib(?:\.[A-Za-z_]\w*)+)")
MAP_PAGE = PROJECT_ROOT / "docs" / "development.md"
MAP_ENTRY = re.compile(r"^(?P<indent>(?:[│ ] {3}|[├└]── )*)(?P<name>[\w.]+/?)(?:\s{2,}\S.*)?$")
REFERENCE_CHECKPOINT = "reports/reference/best.pt"


def _examples() -> list[tuple[str, str]]:
    return [(f"{page.name}:{n + 1}", code) for page in PAGES for n, code in enumerate(EXAMPLE.findall(page.read_text()))]


def _stage_example_files(folder) -> None:
    """What the examples open, in the folder they run in: the committed reference checkpoint at its path in the
    project, a drawn photo of a figure (`photo.jpg`) and a background (`beach.jpg`)."""
    checkpoint = folder / REFERENCE_CHECKPOINT
    checkpoint.parent.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / REFERENCE_CHECKPOINT, checkpoint)
    photo, _ = draw_pair(np.random.default_rng(0), 240, 180)
    photo.save(folder / "photo.jpg")
    sky = np.linspace(90, 230, 180, dtype=np.uint8)[:, None, None].repeat(240, axis=1).repeat(3, axis=2)
    Image.fromarray(sky).save(folder / "beach.jpg")


def test_the_docs_hold_python_examples():
    assert _examples(), "no ```python block found: the collection below would test nothing"


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[where for where, _ in _examples()])
def test_each_python_example_runs(where, code, tmp_path, monkeypatch):
    """Each example runs as written, in a fresh folder, with seglib's outputs pointed into it."""
    for variable, name in (("SEGLIB_RUNS_DIR", "runs"), ("SEGLIB_REPORTS_DIR", "out-reports"),
                           ("SEGLIB_CACHE_DIR", "cache")):
        monkeypatch.setenv(variable, str(tmp_path / name))
    monkeypatch.chdir(tmp_path)
    _stage_example_files(tmp_path)
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})  # noqa: S102 - the documentation's own example


def _resolves(dotted: str) -> bool:
    """`seglib.a.b.Name` is a module, or an attribute of the longest module prefix that imports."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_every_seglib_name_in_the_docs_imports():
    named = {(page.name, name.rstrip(".")) for page in PAGES for name in NAME.findall(page.read_text())}
    assert named, "no `seglib.…` name found"
    assert sorted(f"{page}: {name}" for page, name in named if not _resolves(name)) == []


def _mapped_paths(text: str) -> set[str]:
    """Every path docs/development.md's layout map names: each ```text block that starts with `seglib/…` is a tree
    drawn with ├── / └── / │, four characters a level, a short phrase after each name."""
    paths = set()
    for block in re.findall(r"^```text\n(seglib/.*?)^```", text, re.S | re.M):
        root, *lines = block.splitlines()
        stack = [root.split()[0].rstrip("/")]
        paths.add(stack[0])
        for line in lines:
            entry = MAP_ENTRY.match(line)
            assert entry, f"not a line of the map: {line!r}"
            depth = len(entry["indent"]) // 4
            del stack[depth:]
            stack.append(entry["name"].rstrip("/"))
            paths.add("/".join(stack))
    return paths


def _package_paths() -> set[str]:
    """Every module and package of seglib (package plumbing, `__init__` and `__main__`, aside), and the data
    folders inside it."""
    found = {"seglib"}
    for path in (PROJECT_ROOT / "seglib").rglob("*"):
        relative = path.relative_to(PROJECT_ROOT)
        if "__pycache__" in relative.parts or path.name in ("__init__.py", "__main__.py"):
            continue
        if path.suffix == ".py" or path.is_dir():
            found.add(relative.as_posix())
    return found


def test_the_layout_map_names_every_module_and_no_other():
    mapped = _mapped_paths(MAP_PAGE.read_text())
    actual = _package_paths()
    assert {"missing from the map": sorted(actual - mapped), "not in the package": sorted(mapped - actual)} == {
        "missing from the map": [], "not in the package": []}


def test_the_map_reader_follows_the_tree():
    text = ("```text\nseglib/\n├── a.py            one\n├── b/\n│   ├── c.py        two\n│   └── d/\n"
            "│       └── e.py    three\n└── f.py            four\n```\n")
    assert _mapped_paths(text) == {"seglib", "seglib/a.py", "seglib/b", "seglib/b/c.py", "seglib/b/d", "seglib/b/d/e.py",
                                   "seglib/f.py"}
