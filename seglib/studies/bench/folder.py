"""The folder benchmark: `seglib predict` on a folder of photos as a user runs it (the command, start-up, decode,
network and writing included) against MediaPipe's own runtime doing the same with the same folder, once on an
idle machine and once with another process keeping one core busy; mean IoU of every set of masks, and each of ours
against MediaPipe's photo by photo. Ours: the committed reference with its defaults (the reported protocol: flip
TTA) and with `--no-tta` (one pass), and the 256 px model (`reports/reference-256`) with its defaults.

The folder is Penn-Fudan's 170 photos, with masks to score. Every command runs on all of them (the time), but each
of our models is scored only on the photos its checkpoint's record says did not train or validate it (a model
trained on Penn-Fudan's train split: its 24 test photos), and against MediaPipe photo by photo on those same photos. Each command runs once untimed first (ONNX export cached, files in the page cache), then `REPEATS`
times, the commands taking turns; the fastest run counts. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from seglib.infra.devices import describe_machine
from seglib.infra.errors import SeglibError
from seglib.infra.paths import display_path
from seglib.metrics import bootstrap_ci, iou
from seglib.studies.anchors import MEDIAPIPE_VERSION, WORKER, default_python

logger = logging.getLogger(__name__)
REPEATS = 5
LOADS = ("idle", "one core busy")
BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def one_core_busy(busy: bool) -> Iterator[None]:
    """Another process spinning on one core for the duration (nothing when `busy` is false)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def timed_command(argv: list[str]) -> tuple[float, float]:
    """(seconds to the first line on stdout, seconds to exit) of a command; a SeglibError if it fails."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.readline()
    first = time.perf_counter() - start
    _, err = child.communicate()
    seconds = time.perf_counter() - start
    if child.returncode:
        last = (err.strip().splitlines() or ["no message"])[-1]
        raise SeglibError(f"{argv[0]} {argv[1]} failed ({child.returncode}): {last}")
    return first, seconds


def photo_ious(out: Path, pairs) -> list[float]:
    """IoU of each mask `<stem>.mask.png` in `out` against the pairs' masks, in the pairs' order."""
    scores = []
    for row in pairs.items.itertuples(index=False):
        _, truth = pairs.load(Path(row.image_path), Path(row.mask_path))
        with Image.open(out / f"{Path(row.image_path).stem}.mask.png") as mask:
            scores.append(float(iou(np.asarray(mask.convert("L")) > 127, truth)))
    return scores


def paired_against(ours: list[float], theirs: list[float]) -> dict:
    """Ours minus theirs photo by photo: the mean difference, its 95% bootstrap interval, photos better."""
    diff = np.asarray(ours) - np.asarray(theirs)
    return {"mean": float(diff.mean()), "ci95": bootstrap_ci(diff), "better": int((diff > 0).sum()),
            "photos": int(diff.size)}


def measure_folder(ours: list[tuple[Path, tuple[str, ...]]], *, pairs=None, mediapipe_python=None,
                   photos: int | None = None) -> dict:
    """Every command on the folder, idle and with one core busy (see the module); the numbers as a dict."""
    from seglib.data.descriptions import external_check_set
    from seglib.data.registry import scored_set

    check = external_check_set()  # the default folder: the set models are checked on
    title = (check.title or check.name) if pairs is None else pairs.name
    pairs = pairs if pairs is not None else scored_set(check.name)
    if photos:
        pairs.items = pairs.items.head(photos)
    python = Path(mediapipe_python) if mediapipe_python else default_python()
    if not python.is_file():
        raise SeglibError(f"{python}: no mediapipe environment; run `make mediapipe-anchor` first")
    with tempfile.TemporaryDirectory(prefix="seglib-folder-bench-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for path in pairs.items["image_path"]:
            shutil.copy2(path, folder / Path(path).name)
        commands = {command_name(c, options): _ours(c, options, folder) for c, options in ours}
        theirs = [str(python), str(WORKER), "--folder", str(folder)]
        commands[f"MediaPipe {MEDIAPIPE_VERSION}"] = lambda out: theirs + [str(out), "0"]
        result = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "photos": len(pairs.items),
                  "folder": f"{title} {Path(pairs.items['image_path'].iloc[0]).parent.name}",
                  "commands": {command_name(c, options): " ".join(["seglib predict --checkpoint", display_path(c),
                                                                   *options, "FOLDER --out DIR"])
                               for c, options in ours},
                  "machine": describe_machine(), "repeats": REPEATS, "loads": {}, "mean_iou": {},
                  "vs_mediapipe": {}}
        seen = {c: _seen(c, pairs) for c in dict.fromkeys(c for c, _ in ours)}  # each checkpoint's record read once
        unseen = {command_name(c, options): ~pairs.items["id"].astype(str).isin(seen[c]).to_numpy()
                  for c, options in ours}
        result["scored_photos"] = {name: int(keep.sum()) for name, keep in unseen.items()}
        ious = {}
        for i, (name, argv) in enumerate(commands.items()):  # untimed first runs: exports cached, photos read once
            out = Path(tmp) / f"out{i}"
            timed_command(argv(out))
            ious[name] = np.asarray(photo_ious(out, pairs))
            keep = unseen.get(name, np.ones(len(ious[name]), dtype=bool))
            result["mean_iou"][name] = float(ious[name][keep].mean()) if keep.any() else float("nan")
        mediapipe = list(commands)[-1]
        result["vs_mediapipe"] = {name: paired_against(ious[name][keep], ious[mediapipe][keep])
                                  for name, keep in unseen.items() if keep.any()}
        for load in LOADS:
            runs: dict[str, list] = {name: [] for name in commands}
            with one_core_busy(load != "idle"):
                for _ in range(REPEATS):  # the commands take turns, so a slower spell of the machine hits all alike
                    for i, (name, argv) in enumerate(commands.items()):
                        runs[name].append(timed_command(argv(Path(tmp) / f"out{i}")))
            result["loads"][load] = {name: _summary(times, len(pairs.items)) for name, times in runs.items()}
            logger.info(f"folder bench, {load}: " + ", ".join(f"{n} {r['seconds']:.1f} s" for n, r in
                                                              result["loads"][load].items()))
    return result


def _seen(checkpoint: Path, pairs) -> set[str]:
    """The folder's photos that trained or validated `checkpoint` (its record of training photos decides)."""
    from seglib.checkpoint import load_checkpoint
    from seglib.data.selection import seen_photos

    return seen_photos(load_checkpoint(checkpoint).get("data_split"), pairs)


def command_name(checkpoint: Path, options: tuple[str, ...] = ()) -> str:
    """How a row names our command: by the folder of the checkpoint it runs (reference, reference-256) and the
    options it adds to the defaults."""
    return ", ".join(["seglib predict", Path(checkpoint).parent.name, *options])


def _ours(checkpoint: Path, options: tuple[str, ...], folder: Path):
    argv = [sys.executable, "-m", "seglib", "predict", "--checkpoint", str(checkpoint), str(folder), *options,
            "--no-progress", "--overwrite", "--out"]
    return lambda out: argv + [str(out)]


def _summary(times: list[tuple[float, float]], photos: int) -> dict:
    first, seconds = min(times, key=lambda t: t[1])
    return {"seconds": round(seconds, 2), "ms_per_photo": round(1000 * seconds / photos, 1),
            "first_line_s": round(first, 2)}
