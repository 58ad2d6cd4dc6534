"""File helpers: atomic writes and image decoding that fails with a clear, one-line message."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seglib.errors import DataError, SeglibError

# Pillow's decompression-bomb guard, made an error instead of a warning: 64 megapixels is far above any
# photo this workbook is meant for (the data set's largest image is under 1 megapixel).
MAX_IMAGE_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp")  # what a folder scan takes
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open() would
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Prove that `path` is (or can be created as) a writable folder, without creating anything.

    A SeglibError names the path and the problem: a file where a folder should be, or a folder that cannot be
    written. Called before long work starts; the folder itself is created when the first file is written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SeglibError(f"{path}: is a file, not a folder")
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise SeglibError(f"{path}: output folder is not writable ({ancestor} is a file, not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=ancestor, prefix=".write-test."):
            pass
    except OSError as exc:
        raise SeglibError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    return path


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove it is writable (see `check_writable_dir` to check without creating)."""
    path = check_writable_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test."):
            pass
    except OSError as exc:
        raise SeglibError(f"{path}: output folder is not writable ({exc.strerror or exc})") from None
    return path


class NewFolder:
    """Create a folder (and missing parents) for a piece of work and remember which ones were new, so that work
    that failed or wrote nothing can remove them again (`rollback`): a failed command leaves no empty folder.
    As a context manager it rolls back when the block raises."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.created: list[Path] = []
        probe = self.path
        while not probe.exists() and probe.parent != probe:
            self.created.append(probe)
            probe = probe.parent
        ensure_writable_dir(self.path)

    def rollback(self) -> None:
        """Remove the folders this object created, deepest first, as long as they are empty."""
        for folder in self.created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty

    def __enter__(self) -> NewFolder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.rollback()


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image, or raise DataError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read (wrong extension or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{path}: image too large (over {MAX_IMAGE_PIXELS // 1_000_000} megapixels; decompression-bomb guard)"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from None
    except (ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt image ({exc})") from None
    return img


def load_rgb(path: str | os.PathLike, exif_transpose: bool = True) -> np.ndarray:
    """Decode any JPEG/PNG (grayscale, palette, RGBA, CMYK, 16-bit) to an HxWx3 uint8 RGB array.

    With `exif_transpose` the image is rotated as viewers show it (EXIF orientation tag applied).
    Transparent pixels are composited on black.
    """
    img = open_image(path)
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    return to_rgb_array(img)


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to HxWx3 uint8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_mask_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask to a 2-D uint8 array of its stored values (colour masks are reduced to their max channel)."""
    img = open_image(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(arr / (257.0 if arr.max() > 255 else 1.0), 0, 255).astype(np.uint8)
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if img.mode in ("LA",):
        return np.asarray(img.getchannel(0), dtype=np.uint8).copy()
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return rgb.max(axis=2)


def save_png_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
