"""The folder benchmark: `seglib predict` on a folder of photos as a user runs it (the command, start-up, decode,
network and writing included) against MediaPipe's own runtime doing the same with the same folder, once on an
idle machine and once with another process keeping one core busy; mean IoU of both sets of masks.

The folder is Penn-Fudan's 170 photos: external for the committed reference (it trained on this data set only),
with masks to score. Each command runs once untimed first (ONNX export cached, files in the page cache), then
`REPEATS` times; the fastest run counts. A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from seglib.anchors import MEDIAPIPE_VERSION, WORKER, default_python
from seglib.config import display_path
from seglib.devices import describe_machine
from seglib.errors import SeglibError
from seglib.metrics import iou

REPEATS = 3
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


def mean_iou(out: Path, pairs) -> float:
    """Mean IoU of the masks `<stem>.mask.png` in `out` against the pairs' masks."""
    scores = []
    for row in pairs.items.itertuples(index=False):
        _, truth = pairs.load(Path(row.image_path), Path(row.mask_path))
        with Image.open(out / f"{Path(row.image_path).stem}.mask.png") as mask:
            scores.append(iou(np.asarray(mask.convert("L")) > 127, truth))
    return float(np.mean(scores))


def measure_folder(checkpoint: Path, *, pairs=None, mediapipe_python=None, photos: int | None = None,
                   log=lambda _: None) -> dict:
    """Both commands on the folder, idle and with one core busy (see the module); the numbers as a dict."""
    from seglib.data.external import pennfudan

    pairs = pairs if pairs is not None else pennfudan()
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
        ours = [sys.executable, "-m", "seglib", "predict", "--checkpoint", str(checkpoint), str(folder),
                "--no-progress", "--overwrite", "--out"]
        theirs = [str(python), str(WORKER), "--folder", str(folder)]
        commands = {"seglib predict": lambda out: ours + [str(out)],
                    f"MediaPipe {MEDIAPIPE_VERSION}": lambda out: theirs + [str(out), "0"]}
        result = {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "photos": len(pairs.items), "folder": "Penn-Fudan PNGImages (external for the reference)",
                  "checkpoint": display_path(checkpoint), "machine": describe_machine(), "repeats": REPEATS,
                  "loads": {}, "mean_iou": {}}
        for name, argv in commands.items():  # untimed first runs: the ONNX export cached, the photos read once
            timed_command(argv(Path(tmp) / name))
            result["mean_iou"][name] = mean_iou(Path(tmp) / name, pairs)
        for load in LOADS:
            with one_core_busy(load != "idle"):
                runs = {name: [timed_command(argv(Path(tmp) / name)) for _ in range(REPEATS)]
                        for name, argv in commands.items()}
            result["loads"][load] = {name: _summary(times, len(pairs.items)) for name, times in runs.items()}
            log(f"folder bench, {load}: " + ", ".join(f"{n} {r['seconds']:.1f} s" for n, r in
                                                      result["loads"][load].items()))
    return result


def _summary(times: list[tuple[float, float]], photos: int) -> dict:
    first, seconds = min(times, key=lambda t: t[1])
    return {"seconds": round(seconds, 2), "ms_per_photo": round(1000 * seconds / photos, 1),
            "first_line_s": round(first, 2)}


def folder_markdown(result: dict) -> str:
    """The folder benchmark as a short Markdown section."""
    names = list(result["mean_iou"])
    lines = [f"## A folder of {result['photos']} photos, end to end", "",
             f"{result['folder']}; `{names[0]} --checkpoint {result['checkpoint']} FOLDER --out DIR` against "
             f"MediaPipe's own runtime writing the same masks (decode and write included for both; the fastest of "
             f"{result['repeats']} runs after an untimed one). Machine: {result['machine']['cpu_count']} CPU cores, "
             f"{result['machine']['platform']}; measured {result.get('generated', '')}.", "",
             "| load | command | seconds | ms per photo | first line (s) | mean IoU |", "|---|---|---|---|---|---|"]
    for load, rows in result["loads"].items():
        for name, row in rows.items():
            first = f"{row['first_line_s']:.2f}" if name == names[0] else "–"
            lines.append(f"| {load} | {name} | {row['seconds']:.1f} | {row['ms_per_photo']:.1f} | {first} | "
                         f"{result['mean_iou'][name]:.3f} |")
    lines.append("")
    for load, rows in result["loads"].items():
        ours, theirs = (rows[n]["seconds"] for n in names)
        lines.append(f"- {load}: ours takes {ours / theirs:.2f}x MediaPipe's time, at "
                     f"{result['mean_iou'][names[0]] - result['mean_iou'][names[1]]:+.3f} mean IoU.")
    return "\n".join(lines) + "\n"
