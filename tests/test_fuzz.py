"""A bounded fuzz test over every command: generated argument lists, `--set` values, run names, papermill
parameters and small corrupted files. Every call must end with exit status 0, 1 or 2, print no Python traceback,
change nothing outside its temporary folder and leave no half-written file or lock behind.

Replay or widen it with SEGLIB_FUZZ_SEED (default 0), SEGLIB_FUZZ_EXAMPLES and SEGLIB_FUZZ_SECONDS; the seed is
printed. Seeds 0-7 ran clean when this was written (docs/guarantees.md). Notebook
execution is replaced by a stub (kernels take seconds to start): the report's argument handling is what is fuzzed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from seglib.cli import build_parser, main
from seglib.infra.errors import SeglibError
from seglib.infra.paths import PROJECT_ROOT
from seglib.settings import TrainConfig

FUZZ_SEED = int(os.environ.get("SEGLIB_FUZZ_SEED", "0"))
FUZZ_EXAMPLES = int(os.environ.get("SEGLIB_FUZZ_EXAMPLES", "5000"))
TIME_BUDGET_S = float(os.environ.get("SEGLIB_FUZZ_SECONDS", "40"))
WATCHED = ("data", "reports", "runs", "notebooks")  # project folders no fuzzed call may change

WORDS = ["", " ", "-1", "0", "1", "2", "1e9", "nan", "inf", "0.5", "1.5", "x" * 300, "nl\n", "../up", "a,b", ",",
         "0,0", "café", "val", "test", "smoke", "cpu", "auto", "gpu", "--", "-x", "best", "last", "none", "true",
         "[1, 2]", "{a: 1}", "null", "trained"]
PARAMS = ["run", "profile", "data_dir", "retrain", "threshold", "split", "epochs", "nope", "seed", ""]


def _files(root: Path) -> dict[str, Path]:
    """Small good and corrupted inputs: images, checkpoints, an ONNX file, CSV and YAML files, folders."""
    import torch

    folder = root / "files"
    folder.mkdir()
    rng = np.random.default_rng(0)
    photo = folder / "photo.png"
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(photo)
    truncated = folder / "truncated.png"
    truncated.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])
    colour = folder / "colour_mask.png"
    colour_array = np.zeros((24, 32, 3), np.uint8)
    colour_array[..., 2] = 255
    colour_array[6:18, 8:24] = 255
    Image.fromarray(colour_array).save(colour)
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(rng.bytes(300))
    (folder / "garbage.pt").write_bytes(rng.bytes(300))
    torch.save({"config": {"model": 3}, "threshold": "high"}, folder / "mistyped.pt")
    torch.save({"model_state": {}}, folder / "partial.pt")
    (folder / "garbage.onnx").write_bytes(rng.bytes(300))
    (folder / "wrong.csv").write_text("a,b\n1,2\n")
    (folder / "pairs.csv").write_text(f"image,mask\n{photo},{colour}\n{photo},{colour}\n")
    (folder / "dup.yaml").write_text("epochs: 1\nepochs: 2\n")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "images").mkdir()
    Image.open(photo).save(folder / "images" / "a.png")
    (folder / "masks").mkdir()
    Image.open(colour).save(folder / "masks" / "a.png")
    return {p.name: p for p in folder.iterdir()} | {
        "missing": root / "nope" / "x.png", "folder": folder, "under_a_file": photo / "sub" / "out",
        "images_and_masks": Path(f"{folder / 'images'}:{folder / 'masks'}"), "abs_out": root / "out"}


def _snapshot(roots) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under the project's watched folders."""
    found = {}
    for top in roots:
        for path in Path(top).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            stat = path.stat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _commands() -> dict[tuple[str, ...], list[argparse.Action]]:
    """Every (sub)command's path and its actions, read from the parser itself (new options are fuzzed too)."""
    out: dict[tuple[str, ...], list[argparse.Action]] = {}

    def walk(path, parser):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[path] = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        for sub in subs:
            for name, child in sub.choices.items():
                walk(path + (name,), child)

    walk((), build_parser())
    return out


COMMANDS = _commands()
SETTING_NAMES = [f.name for f in fields(TrainConfig)] + ["nokey", ""]


COSTLY = {"epochs", "input_size", "cache_max_side", "limit_train", "limit_val", "max_train_minutes", "profile"}
BOUNDED = ["0", "-1", "1", "1e9", "nan", "x", "1.5", ""]  # the values a costly setting is drawn from


@st.composite
def argument_lists(draw, files: dict[str, Path], commands=None, bounded: bool = False):
    """One command's argv: a few of its options with values drawn from good, odd and corrupted inputs.
    With `bounded`, training stays tiny: the smoke profile, and costly settings only take values that are
    refused or cheap."""
    path = draw(st.sampled_from(sorted(commands or COMMANDS)))
    actions = [a for a in COMMANDS[path] if not (bounded and "--profile" in a.option_strings)]
    values = st.one_of(st.sampled_from(WORDS), st.sampled_from(sorted(str(p) for p in files.values())),
                       st.text(max_size=12))
    argv = list(path) + (["--profile", "smoke"] if bounded and path[0] in ("train", "report") else [])
    for action in draw(st.lists(st.sampled_from(actions), max_size=4)) if actions else []:
        flag = action.option_strings[0] if action.option_strings else None
        if action.nargs == 0:
            argv.append(flag)
            continue
        if isinstance(action, argparse._AppendAction) and flag in ("--set", "-p"):
            names = SETTING_NAMES if flag == "--set" else PARAMS
            key = draw(st.sampled_from(names))
            value = draw(st.sampled_from(BOUNDED) if bounded and key in COSTLY else values)
            argv += [flag, draw(st.sampled_from([f"{key}={value}", key]))] if flag == "--set" else [flag, key, value]
            continue
        count = 2 if action.nargs == 2 else draw(st.integers(1, 2)) if action.nargs == "+" else 1
        for _ in range(count):
            if action.choices and draw(st.booleans()):
                chosen = draw(st.sampled_from(sorted(action.choices)))
            else:
                chosen = draw(values)
            argv += ([flag] if flag else []) + [chosen]
            flag = None if action.nargs in (2, "+") else flag
    return argv


def _left_over(root: Path) -> list[str]:
    """Temporary files of an atomic write, or lock files, still there after a command returned."""
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".lock"))


@pytest.fixture
def fuzz_home(tmp_path, monkeypatch):
    """A temporary world: data, runs and reports folders that are empty, no download source, cwd inside it."""
    from seglib.infra import paths

    work = tmp_path / "work"
    work.mkdir()
    for name, value in {"SEGLIB_DATA_DIR": tmp_path / "data", "SEGLIB_RUNS_DIR": tmp_path / "runs",
                        "SEGLIB_DATASETS_DIR": tmp_path / "datasets",
                        "SEGLIB_REPORTS_DIR": tmp_path / "reports", "SEGLIB_PENNFUDAN_DIR": tmp_path / "pf",
                        "SEGLIB_DATASET_SOURCE": tmp_path / "no-source",
                        "SEGLIB_PENNFUDAN_SOURCE": tmp_path / "no-source"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("SEGLIB_PROFILE", "smoke")
    monkeypatch.setattr(paths, "splits_dir", lambda: tmp_path / "splits")
    monkeypatch.setattr(paths, "external_data_dir", lambda: tmp_path / "external")
    monkeypatch.chdir(work)

    def no_kernels(*_args, **_kwargs):
        raise SeglibError("fuzz: notebook execution is not run here")

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", no_kernels)
    return tmp_path


def _checked_call(home: Path, argv: list[str]) -> int:
    """Run one argv through `seglib.cli.main`: exit 0/1/2, no traceback, at most one error line, nothing
    half-written left in `home`; returns the exit status."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else 2
    text = err.getvalue()
    assert code in (0, 1, 2), f"exit {code} for {argv!r}: {text[-300:]}"
    assert "Traceback" not in text, f"traceback for {argv!r}: {text[-500:]}"
    errors = [line for line in text.splitlines() if line.startswith("seglib: error:")]
    assert len(errors) <= 1, f"more than one error line for {argv!r}: {errors}"
    assert _left_over(home) == [], f"half-written files after {argv!r}"
    return code


def _fuzz(home: Path, files: dict[str, Path], strategy, capsys, budget_s: float, prepare=None, after=None,
          max_examples: int = FUZZ_EXAMPLES) -> None:
    """Run generated argv lists through `seglib.cli.main` and check each call and the project afterwards;
    `prepare(drawn)` turns what the strategy drew into the argv lists to run in turn (default: it is one), and
    `after(drawn)` checks what they left. `max_examples` bounds what Hypothesis draws, so that drawing examples
    the spent budget skips costs no time either."""
    watched = [PROJECT_ROOT / name for name in WATCHED]
    before = _snapshot(watched)
    started = time.monotonic()
    seen: list[list[str]] = []
    failed: list[list[str]] = []  # once a call failed, the budget no longer cuts replays short (shrinking)

    @seed(FUZZ_SEED)
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(drawn=strategy)
    def one_call(drawn):
        if time.monotonic() - started > budget_s and not failed:
            return
        failed.append(drawn)
        for argv in prepare(drawn) if prepare is not None else [drawn]:
            seen.append(argv)
            if _checked_call(home, argv) != 0:
                break  # a command that refused its input: the ones after it read what it would have written
        if after is not None:
            after(drawn)
        failed.pop()

    one_call()
    assert seen, "no example ran"
    assert _snapshot(watched) == before, "a fuzzed call changed the project outside its temporary folder"
    with capsys.disabled():
        print(f"\nfuzz seed {FUZZ_SEED}: {len(seen)} calls over {len({tuple(a[:2]) for a in seen})} commands "
              f"in {time.monotonic() - started:.0f} s, nothing found")


@pytest.mark.slow  # make test fuzzes the commands with a data set and a trained run (below), the richer case
def test_fuzz_every_command_without_data_exits_cleanly_and_changes_nothing_outside_its_folder(fuzz_home, capsys):
    files = _files(fuzz_home)
    _fuzz(fuzz_home, files, argument_lists(files), capsys, TIME_BUDGET_S * 0.4)


def test_fuzz_commands_on_a_data_set_and_a_trained_run_exit_cleanly(fuzz_home, capsys):
    """With a (synthetic) data set, its splits and a trained smoke run: the commands get past their first
    checks, so --set values, run names, checkpoints and corrupted inputs reach the code behind them."""
    from conftest import make_dataset

    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split
    from seglib.profiles import make_config
    from seglib.training.engine import train

    dataset = make_dataset(fuzz_home / "data", n=12)
    table = make_split(check_dataset(dataset), seed=0, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    write_split(table, fuzz_home / "splits")
    train(make_config("smoke", {"epochs": 1}), fuzz_home / "runs" / "trained", progress=False)
    files = _files(fuzz_home) | {"run": fuzz_home / "runs" / "trained" / "best.pt"}
    commands = [path for path in COMMANDS if path[0] not in ("cv", "bench", "anchor")]
    _fuzz(fuzz_home, files, argument_lists(files, commands, bounded=True), capsys, TIME_BUDGET_S * 0.6)


# Generated data sets for `seglib data add` (then `data check` and `data split` of what it registered): folder
# layouts, pairs CSVs and COCO files, good and broken (#35). Besides the checks of every call, the inputs a command
# read are never changed or deleted.
PHOTO_KINDS = ["png", "jpg", "webp", "bmp", "tif", "truncated", "empty", "garbage", "folder", "loop", "broken", "none"]
MASK_KINDS = ["binary", "grey", "colour", "alpha", "half", "other-size", "none", "empty", "loop"]
JUNK = st.one_of(st.none(), st.integers(-3, 40), st.text(max_size=4), st.floats(allow_nan=True),
                 st.lists(st.integers(-3, 40), max_size=6))
W, H = 16, 12


def _photo(path: Path, kind: str) -> None:
    """A photo file of `kind` at `path` (its suffix chosen by the kind)."""
    rng = np.random.default_rng(len(str(path)))
    array = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    if kind in ("png", "jpg", "webp", "bmp", "tif", "truncated"):
        Image.fromarray(array).save(path)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:40])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(rng.bytes(64))
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "broken":
        path.symlink_to(path.parent / "nowhere.png")


def _mask(path: Path, kind: str) -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[3:9, 4:12] = 255
    if kind == "binary":
        Image.fromarray(mask).save(path)
    elif kind == "grey":
        Image.fromarray(mask // 2 + 7).save(path)
    elif kind == "colour":
        Image.fromarray(np.stack([mask, mask // 3, 255 - mask], axis=2)).save(path)
    elif kind == "alpha":
        Image.fromarray(np.dstack([np.full((H, W, 3), 255, np.uint8), mask])).save(path)
    elif kind == "half":
        Image.fromarray(mask[::2, ::2]).save(path)
    elif kind == "other-size":
        Image.fromarray(np.zeros((H + 5, W), np.uint8)).save(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "loop":
        path.symlink_to(path.name)


@st.composite
def folder_layouts(draw):
    entries = draw(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", ".h", "x y"]), st.sampled_from(PHOTO_KINDS),
                                      st.sampled_from(MASK_KINDS)), min_size=1, max_size=5, unique_by=lambda e: e[0]))
    rule = draw(st.sampled_from([None, "binary", "nonzero", "alpha", "==255", "rgb:255,85,0", "in:1,x"]))
    return ("folders", entries, draw(st.sampled_from(["", "_mask"])), rule)


@st.composite
def pairs_tables(draw):
    refs = st.sampled_from(["images/a.png", "images/b.jpg", "masks/a.png", "masks/b.png", "../outside.png",
                            "/nonexistent/a.png", "missing.png", "", "images", "masks/grey.png", "masks/alpha.png"])
    header = draw(st.sampled_from(["image,mask", "image,mask,id", "mask,image", "img,msk", ""]))
    rows = draw(st.lists(st.tuples(refs, refs, st.sampled_from(["1", "2", "1", "", "x/y"])), max_size=5))
    return ("pairs", header, rows, draw(st.sampled_from([None, "binary", "nonzero", "alpha"])))


@st.composite
def coco_files(draw):
    names = st.one_of(st.sampled_from(["a.png", "b.png", "sub/c.png", "../outside.png", "/nonexistent/a.png",
                                       "missing.png", "", "a.png"]), JUNK)
    sizes = st.one_of(st.sampled_from([W, H, 0, -1, 10**9]), JUNK)
    images = draw(st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(0, 3), JUNK), "file_name": names,
                                                  "width": sizes, "height": sizes}), max_size=4))
    polygon = st.lists(st.lists(st.integers(-5, 30), min_size=0, max_size=10), max_size=2)
    rle = st.fixed_dictionaries({"counts": st.one_of(st.lists(st.integers(-3, 200), max_size=6), st.text(max_size=6)),
                                 "size": st.one_of(st.just([H, W]), JUNK)})
    annotations = draw(st.lists(st.fixed_dictionaries({
        "id": st.integers(0, 9), "image_id": st.one_of(st.integers(0, 4), JUNK),
        "category_id": st.one_of(st.sampled_from([1, 2]), JUNK), "segmentation": st.one_of(polygon, rle, JUNK)}),
        max_size=4))
    categories = draw(st.sampled_from([[{"id": 1, "name": "person"}], [{"id": 2, "name": "dog"}], [], "x",
                                       [{"id": 1, "supercategory": "person", "name": "pedestrian"}]]))
    data = draw(st.sampled_from([{"images": images, "annotations": annotations, "categories": categories}, images]))
    return ("coco", data, draw(st.booleans()))


def _fuzz_example_folder(home: Path) -> Path:
    """A new folder for one generated example (its own files, never shared with another example)."""
    found = sorted(home.glob("example-*"))
    folder = home / f"example-{len(found):05d}"
    folder.mkdir()
    return folder


def _prepare_data_example(home: Path):
    """drawn layout -> the argv lists of `data add NAME ...`, `data check NAME` and `data split NAME`."""
    def prepare(drawn) -> list[list[str]]:
        import json

        folder = _fuzz_example_folder(home)
        name = f"fz{folder.name[-5:]}"
        images, masks = folder / "images", folder / "masks"
        images.mkdir()
        masks.mkdir()
        kind = drawn[0]
        if kind == "folders":
            _, entries, suffix, rule = drawn
            for stem, photo_kind, mask_kind in entries:
                _photo(images / f"{stem}.{photo_kind if photo_kind in PHOTO_KINDS[:5] else 'png'}", photo_kind)
                _mask(masks / f"{stem}{suffix}.png", mask_kind)
            add = ["--images", str(images), "--masks", str(masks)] + (["--mask-suffix", suffix] if suffix else [])
        elif kind == "pairs":
            _, header, rows, rule = drawn
            for stem, photo_kind in (("a", "png"), ("b", "jpg")):
                _photo(images / f"{stem}.{photo_kind}", photo_kind)
                _mask(masks / f"{stem}.png", "binary")
            _mask(masks / "grey.png", "grey")
            _mask(masks / "alpha.png", "alpha")
            _photo(home / "outside.png", "png")
            lines = [header] + [",".join(row[:len(header.split(","))] if header else row) for row in rows]
            (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
            add = ["--pairs", str(folder / "pairs.csv")]
        else:
            _, data, sub = drawn
            rule = None
            for stem in ("a", "b"):
                _photo(images / f"{stem}.png", "png")
            if sub:
                (images / "sub").mkdir()
                _photo(images / "sub" / "c.png", "png")
            (folder / "coco.json").write_text(json.dumps(data))
            add = ["--coco", str(folder / "coco.json"), "--images", str(images)]
        rule_args = ["--mask-rule", rule] if rule else []
        return [["data", "add", name, *add, *rule_args], ["data", "check", name], ["data", "split", name,
                                                                                  "--folds", "0"]]
    return prepare


def test_fuzz_data_add_check_and_split_of_generated_folders_csvs_and_coco_files(fuzz_home, capsys):
    """Generated folder layouts, pairs CSVs and COCO files through `data add`, then `data check` and `data split`
    of what was registered: every call as above, and the inputs are never changed or deleted."""
    prepare = _prepare_data_example(fuzz_home)
    inputs: dict[str, dict] = {}

    def prepared(drawn) -> list[list[str]]:
        argvs = prepare(drawn)
        folder = sorted(fuzz_home.glob("example-*"))[-1]
        inputs.clear()
        inputs[str(folder)] = _snapshot([folder])
        return argvs

    def inputs_unchanged(drawn) -> None:
        for folder, before in inputs.items():
            assert _snapshot([folder]) == before, f"the commands of {drawn!r} changed or deleted their inputs"

    _fuzz(fuzz_home, {}, st.one_of(folder_layouts(), pairs_tables(), coco_files()), capsys, TIME_BUDGET_S * 0.5,
          prepare=prepared, after=inputs_unchanged,
          max_examples=min(FUZZ_EXAMPLES, int(TIME_BUDGET_S * 20)))  # about what the budget runs, with room
