"""What prediction takes in: the photos and videos named by files and folders, decoded as viewers show them.

- `collect_inputs(paths)`: the image and video files named by files and folders.
- `load_input(path)`: decode any JPEG/PNG to RGB as viewers show it; returns the EXIF orientation applied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglib.infra.errors import SeglibError
from seglib.infra.io import open_image, to_rgb_array
from seglib.infra.paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES, link_problem, user_path

EXIF_ORIENTATION_TAG = 0x0112
# what predict writes (left out of folder scans, so a second run does not predict its own outputs)
OUTPUT_MARKS = (".mask.", ".overlay.", ".cutout.", ".background.")


def is_video(path: Path) -> bool:
    """A video by its name (mp4, mov, m4v, mkv, webm, avi); what it really holds is found when it is opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES



def collect_inputs(paths, *, warn=None) -> list[Path]:
    """The image and video files named by `paths`, in the order given, each file once.

    A file is taken as given, whatever its extension (a bad one is reported when it is decoded). A folder
    contributes its image and video files (IMAGE_SUFFIXES, VIDEO_SUFFIXES, any letter case), sorted by name;
    it is NOT searched recursively, and hidden files (".name") and this command's own outputs (`*.mask.*`,
    `*.overlay.*`, `*.cutout.*`, `*.background.*`) are left out, the latter with a note saying how many, as are
    links named like a photo that lead to no file (a loop, a broken link), with a note naming each. A path that does
    not exist is kept, so that it is reported as a failed input (not a crash). A folder with no images gets
    a note too; no inputs at all is a SeglibError.
    """
    warn = warn or (lambda msg: None)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p.absolute()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for raw in paths:
        p = user_path(raw)
        for c in _scan_folder(p, warn) if p.is_dir() else [p]:
            add(c)
    if not found:
        raise SeglibError("no input images (give image files or folders that contain them)")
    return found


def _scan_folder(folder: Path, warn, shown: int = 5) -> list[Path]:
    """The image and video files of `folder`, sorted by name, with a note for predict's own outputs left out, for
    each link named like a photo that leads to no file (a loop, a broken link), and for a folder with none."""
    children = list(folder.iterdir())
    images = sorted((c for c in children if _is_candidate(c)), key=lambda c: c.name)
    outputs = sum(1 for c in children if _is_own_output(c))
    if outputs:
        warn(f"seglib: note: {folder}: left out {outputs} file{'s' if outputs != 1 else ''} named "
             "*.mask.*, *.overlay.*, *.cutout.* or *.background.* (predict's own outputs); name a file to "
             "predict it anyway")
    dead = sorted((c.name, why) for c in children if not c.name.startswith(".")
                  and c.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and (why := link_problem(c)))
    if dead:
        named = ", ".join(f"{name} ({why})" for name, why in dead[:shown])
        more = f", and {len(dead) - shown} more" if len(dead) > shown else ""
        warn(f"seglib: note: {folder}: left out {len(dead)} link{'s that lead' if len(dead) != 1 else ' that leads'} "
             f"to no file: {named}{more}")
    if not images:
        warn(f"seglib: note: {folder}: no image or video files ({'/'.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}) in this "
             "folder (subfolders are not searched)")
    return images


def _is_candidate(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or not path.is_file() or _is_own_output(path):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _is_own_output(path: Path) -> bool:
    """A mask, overlay, cut-out or composite this command writes."""
    name = path.name.lower()
    return (not name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES and path.is_file()
            and any(mark in name for mark in OUTPUT_MARKS))


def exif_orientation(path: str | Path) -> int:
    """The EXIF (or XMP) orientation tag of an image file, 1 when absent or unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return orientation_of(img)
    except Exception:  # noqa: BLE001 - an unreadable file has no rotation to apply
        return 1


def orientation_of(img) -> int:
    """The orientation tag of an opened PIL image, 1 when absent or odd. (For a PNG, Pillow decodes the whole
    image to find its eXIf chunk: asked of an image already decoded, it costs nothing more.)"""
    try:
        value = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - the image itself decoded; an odd EXIF block only means "no rotation"
        return 1
    return value if value in range(1, 9) else 1


def load_input(path: str | Path) -> tuple[np.ndarray, int]:
    """(HxWx3 uint8 RGB as viewers show it, EXIF orientation applied: 1 = none); DataError when unreadable.
    An animated image (GIF, WebP, multi-page TIFF) gives its first frame (`frame_count` tells). The file is
    decoded once."""
    from PIL import ImageOps

    img = open_image(path)
    orientation = orientation_of(img)  # read before the transpose, which removes the tag
    ImageOps.exif_transpose(img, in_place=True)
    return to_rgb_array(img, path), orientation


def frame_count(path: str | Path) -> int:
    """Number of frames (pages) in an image file; 1 for a still image or an unreadable header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - the image itself decoded; an odd header only means "one frame"
        return 1
