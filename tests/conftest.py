"""Shared fixtures: tiny synthetic data sets in the real layout, and the real data set when it is present."""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# A shell starts a background job (`make test &`) with SIGINT ignored, which every process it starts inherits; the
# tests of Ctrl-C need it delivered as in a terminal, here and in the commands the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

DATASET_NAME = "Human-Segmentation-Dataset-master"


def draw_pair(rng: np.random.Generator, width: int, height: int, mask_scale: float = 1.0):
    """A noisy photo with a bright ellipse 'figure' and its mask (optionally a uniform downscale of the image)."""
    image = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    cx, cy = rng.integers(width // 3, 2 * width // 3), rng.integers(height // 3, 2 * height // 3)
    rx, ry = rng.integers(width // 8, width // 4), rng.integers(height // 6, height // 3)
    box = [cx - rx, cy - ry, cx + rx, cy + ry]
    pil = Image.fromarray(image)
    ImageDraw.Draw(pil).ellipse(box, fill=(220, 180, 150))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    if mask_scale != 1.0:
        size = (round(width / mask_scale), round(height / mask_scale))
        mask = mask.resize(size, Image.NEAREST)
    return pil, mask


def image_and_box_mask(h: int = 40, w: int = 56, seed: int = 0):
    """A noise photo and a 0/1 mask holding one centred box (half the height, a third of the width)."""
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 1
    return image, mask


def make_dataset(root: Path, n: int = 10, seed: int = 0, scaled_every: int = 3) -> Path:
    """Write a synthetic data set in the real layout (train.csv paths relative to the folder's parent)."""
    rng = np.random.default_rng(seed)
    folder = root / DATASET_NAME
    (folder / "Training_Images").mkdir(parents=True)
    (folder / "Ground_Truth").mkdir()
    lines = ["masks,images"]
    for i in range(1, n + 1):
        w, h = (64, 48) if i % 2 else (48, 64)
        scale = 2.0 if scaled_every and i % scaled_every == 0 else 1.0
        img, mask = draw_pair(rng, int(w * scale), int(h * scale), mask_scale=scale)
        img.save(folder / "Training_Images" / f"{i}.jpg", quality=95)
        mask.save(folder / "Ground_Truth" / f"{i}.png")
        lines.append(f"{DATASET_NAME}/Ground_Truth/{i}.png,{DATASET_NAME}/Training_Images/{i}.jpg")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder


def photo_folders(root, n: int = 14, seed: int = 0, *, mask_suffix: str = "", scale_every: int = 4):
    """images/ (JPEG) and masks/ (0/255 PNG, every `scale_every`-th a half-size rescale) of ellipse 'people'."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        scale = 2.0 if scale_every and i % scale_every == 0 else 1.0
        photo, mask = draw_pair(rng, int(56 * scale), int(72 * scale), mask_scale=scale)
        photo.save(images / f"p{i:02d}.jpg", quality=95)
        mask.save(masks / f"p{i:02d}{mask_suffix}.png")
    return images, masks


@pytest.fixture
def synthetic_dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "raw", n=10)


@pytest.fixture
def synthetic_splits(synthetic_dataset, tmp_path) -> tuple[Path, Path]:
    """(dataset folder, splits folder) for the synthetic data set."""
    from seglib.data.check import check_dataset
    from seglib.data.splits import make_split, write_split

    table = make_split(check_dataset(synthetic_dataset), seed=0, fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    splits = tmp_path / "splits"
    write_split(table, splits)
    return synthetic_dataset, splits


def real_dataset_dir() -> Path | None:
    """The real data set, when fetched (data/raw) or pointed to by SEGLIB_TEST_REAL_DATA / SEGLIB_DATA_DIR."""
    from seglib.data.catalog import find_dataset_dir
    from seglib.infra import paths
    from seglib.infra.errors import DataError

    for candidate in (os.environ.get("SEGLIB_TEST_REAL_DATA"), os.environ.get("SEGLIB_DATA_DIR"),
                      str(paths.PROJECT_ROOT / "data" / "raw")):
        if candidate:
            try:
                return find_dataset_dir(Path(candidate))
            except DataError:
                continue
    return None


@pytest.fixture
def real_dataset() -> Path:
    folder = real_dataset_dir()
    if folder is None:
        pytest.skip("real data set not fetched (run `make data`)")
    return folder


def save_tiny_checkpoint(path: Path, epoch: int = 1, input_size: int = 32, seed: int = 0) -> Path:
    """A seglib checkpoint of an untrained width-4 U-Net (for evaluation, prediction and reuse tests)."""
    import torch

    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.models.model import UNet
    from seglib.profiles import make_config

    torch.manual_seed(seed)
    cfg = make_config("smoke", {"input_size": input_size})
    state = make_checkpoint(UNet(base_channels=4, depth=2), cfg, epoch=epoch, val_iou=0.5, best_val_iou=0.5)
    return save_checkpoint(state, path)


def run_subcommand(add_parser, argv: list[str]) -> int:
    """Parse `argv` with one module's `add_parser` (as `seglib` would) and run the command."""
    import argparse

    from seglib.infra.logs import show_messages

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    show_messages()  # as `seglib.cli.main` does
    return args.func(args)


def rebuilt_without_the_tflite_file(net, cfg, tmp_path: Path, monkeypatch):
    """(checkpoint state, model) of `net` saved and rebuilt while the bundled .tflite file is unreachable."""
    from seglib.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
    from seglib.models import model as model_module

    path = save_checkpoint(make_checkpoint(net, cfg, epoch=1, val_iou=0.5, best_val_iou=0.5), tmp_path / "best.pt")
    monkeypatch.setattr(model_module, "MEDIAPIPE_SELFIE_TFLITE", tmp_path / "missing.tflite")
    state = load_checkpoint(path)
    return state, model_from_checkpoint(state)[0]


def one_fast(values, fast):
    """Parameters of a matrix of one check: `fast` runs in `make test`, the others only in `make test-slow` (each
    starts processes or trains; one case keeps the guarantee checked on every run, the matrix covers the rest)."""
    return [pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=() if v == fast else pytest.mark.slow)
            for v in values]



class SmallDisk:
    """A file system of its own, a few MiB (a tmpfs), that a test fills to leave `free` bytes: a real ENOSPC."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / ".filler"

    def leave(self, free: int) -> None:
        """Fill the disk until about `free` bytes are left (0: full)."""
        self.filler.unlink(missing_ok=True)
        stats = os.statvfs(self.root)
        size = max(stats.f_bavail * stats.f_frsize - free, 0)
        with open(self.filler, "wb") as fh:
            try:
                fh.write(b"\0" * size)
            except OSError:
                pass

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted in the test's folder (needs root, as on the project's machines and CI)."""
    import subprocess

    where = tmp_path / "small-disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


class _Routes(BaseHTTPRequestHandler):
    def do_GET(self):
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, send_length = route
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A real HTTP server on 127.0.0.1 for the download code (no proxy); tests add routes: path -> (body, send
    Content-Length). Yields (server, base URL)."""
    monkeypatch.setenv("no_proxy", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
