"""File helpers: atomic writes and image decoding that fails with a clear, one-line message."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seglib.infra.errors import DataError, SeglibError, first_line

# Pillow's decompression-bomb guard, made an error instead of a warning: 64 megapixels is far above any
# photo this workbook is meant for (the data set's largest image is under 1 megapixel).
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _read_heif() -> None:
    """Teach Pillow HEIC/HEIF, the photo format of most phones (AVIF Pillow reads itself): pillow-heif's opener,
    registered once for every image this process opens. It applies the file's own rotation, so a phone photo
    decodes as viewers show it, like a JPEG with its EXIF orientation applied."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # pragma: no cover - a declared dependency; without it a .heic is "not an image"
        return
    register_heif_opener()


_read_heif()


class WriteError(OSError, SeglibError):
    """A file could not be written (disk full, permission, quota): one line naming the file, not its temporary
    copy, and what to do (`advice`); still an OSError for callers that handle those."""

    advice = ""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror}){self.advice}"


FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # the disk (or the quota) is full


def write_error(exc: OSError, path: str | os.PathLike, advice: str | None = None) -> WriteError:
    """`exc` as a WriteError naming `path` (the file the user asked for, not a temporary one beside it)."""
    error = WriteError(exc.errno or errno.EIO, exc.strerror or first_line(exc), str(path))
    if advice is not None:
        error.advice = advice
    elif exc.errno in FULL_DISK_ERRNOS:
        error.advice = "; free some space and run this again"
    return error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path`, on error removed.

    A failure of the file system (a full disk, a permission) is a WriteError naming `path`; nothing half-written
    is left."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open() would
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        if isinstance(exc, WriteError) or exc.filename not in (None, str(path), str(tmp_path)):
            raise  # about another file (a folder the block read): its own name is the right one
        raise write_error(exc, path) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
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


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """`path` is `folder` or lies inside it, after resolving links (neither needs to exist)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def refuse_writing_into(out: str | os.PathLike, inputs, *, option: str = "--out") -> None:
    """A SeglibError when the output folder `out` is one of `inputs` ((folder, description) pairs) or lies
    inside one: a command never writes into what it reads."""
    for folder, description in inputs:
        if folder is not None and is_within(out, folder):
            where = "is" if Path(out).resolve() == Path(folder).resolve() else f"is inside {folder},"
            raise SeglibError(f"{out}: {where} {description}; refusing to write there, even with --overwrite; "
                              f"choose another {option}")


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


def _check_image_file(path: Path) -> None:
    """A DataError unless `path` is a non-empty regular file: names a missing file, a broken link, a link loop,
    a folder, a FIFO or device, or an unreadable one for what it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{path}: broken symbolic link (it points to {os.readlink(path)}, which does not "
                            "exist)") from None
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: symbolic link loop (the link leads back to itself); point it at an image "
                            "file") from None
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: is a folder, not an image")
    if stat.S_ISFIFO(info.st_mode):
        raise DataError(f"{path}: is a named pipe (FIFO), not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: is a special file (a device or socket), not an image file")
    if info.st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image, or raise DataError naming the file and the problem."""
    path = Path(path)
    _check_image_file(path)
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
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
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
    return to_rgb_array(img, path)


def _is_wide(img: Image.Image) -> bool:
    """16-bit, 32-bit integer or 32-bit float pixels (one channel), which need scaling to 8 bits."""
    return img.mode in ("I", "F") or img.mode.startswith("I;16")


def _wide_to_uint8(img: Image.Image, path) -> np.ndarray:
    """A 16/32-bit integer or float single-channel image as HxW uint8, scaled by its range: floats up to 1 are
    0-1 values, values up to 255 are 8-bit, up to 65535 are 16-bit. Anything else (negative values, NaN,
    more than 16 bits) is a DataError naming the file and its values: a guess would silently decode black or
    saturate."""
    arr = np.asarray(img, dtype=np.float64)
    kind = "float" if img.mode == "F" else "32-bit integer" if img.mode == "I" else "16-bit"
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: {kind} image holds NaN or infinite values; save it as an 8- or 16-bit image")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0 or hi > 65535:
        raise DataError(f"{path}: {kind} image with values from {lo:g} to {hi:g}; expected 0-1, 0-255 or 0-65535 "
                        "(save it as an 8- or 16-bit image)")
    if img.mode == "F" and hi <= 1.0:
        scale = 255.0
    elif hi <= 255:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0
    return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)


def to_rgb_array(img: Image.Image, path="image") -> np.ndarray:
    """Convert a decoded PIL image of any mode to HxWx3 uint8 (`path` names it in errors)."""
    if _is_wide(img):
        return np.repeat(_wide_to_uint8(img, path)[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_mask_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask to a 2-D uint8 array of its stored values, by an explicit rule.

    Grey (1-bit, 8-bit, 16/32-bit scaled by range) and palette masks are read as today's grey levels (a
    palette colour by its brightest channel); an RGB mask whose channels are equal is grey too. A true colour
    mask (channels differ, e.g. a white person on a blue background) has no such rule and is a DataError naming
    the file and its most common colours.
    """
    img = open_image(path)
    if _is_wide(img):
        return _wide_to_uint8(img, path)
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if img.mode in ("LA",):
        return np.asarray(img.getchannel(0), dtype=np.uint8).copy()
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if img.mode in ("P", "PA"):
        return rgb.max(axis=2)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].copy()
    raise DataError(f"{path}: colour mask ({_colour_summary(rgb)}); a mask must be grey levels or a palette "
                    "image (person 255 on background 0): save it as a single-channel PNG")


def _colour_summary(rgb: np.ndarray, shown: int = 3) -> str:
    """'N colours, most common (r,g,b) share, ...' of an HxWx3 uint8 array."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    values, counts = np.unique(packed.ravel(), return_counts=True)
    order = np.argsort(-counts, kind="stable")[:shown]
    total = counts.sum()
    top = ", ".join(f"({v >> 16},{(v >> 8) & 255},{v & 255}) {counts[i] / total:.0%}"
                    for i, v in zip(order, values[order], strict=True))
    return f"{len(values)} colour{'s' if len(values) != 1 else ''}, most common {top}"


def save_png_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` (HxW, HxWx3 RGB or HxWx4 RGBA) as a PNG file, atomically. A one-channel uint8 array (a mask)
    is encoded by OpenCV, whose encoder takes a fraction of Pillow's time for masks (a folder's masks are written
    while the network predicts the next photos)."""
    if array.ndim == 2 and array.dtype == np.uint8:
        import cv2

        ok, encoded = cv2.imencode(".png", array)
        if ok:
            with atomic_path(path) as tmp:
                tmp.write_bytes(encoded.tobytes())
            return
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
