"""Person masks from a Label Studio JSON export (`seglib data add NAME --labelstudio FILE --images DIR`).

The export is Label Studio's "JSON" format: a list of tasks, each with its `data` (the photo's URL) and its
`annotations`. A task labelled in Label Studio becomes a pair: its photo, found in the image folder, and one 0/255
mask, the union of the person regions of its annotation (the ground-truth one, else the last updated; skipped
ones, drafts and predictions are not read): brush regions (Label Studio's RLE, `seglib.data.brush`) and polygons
(points in percent of the photo). A task nobody labelled yet, or only skipped, is left out and said so.

The photo is the task's `seglib_photo` (a path inside the image folder, written by `seglib label export`), else
the file its image URL names: the longest tail of the URL's path (a local-files `?d=` path, an upload's path with
the `<8 hex>-` prefix Label Studio gives uploads dropped) that is a file inside the image folder.

Label Studio measures a region on the photo as a browser shows it (EXIF rotation applied); the mask is turned back
to the photo's pixels as stored, as every seglib set reads them. Each problem is one line naming the file and the
task: an export that is not a list of tasks, a region labelled other than `person`, a region seglib cannot draw
(rectangles, ellipses, key points), a photo not found, a region whose size is not its photo's, two tasks of one
photo or two photos sharing a stem. The masks are named by the photo's file stem and listed with their photos in
`pairs.csv` beside them (`data.coco.LISTING`), as a COCO set's are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd
from PIL import Image

from seglib.data.brush import decode_mask
from seglib.data.coco import LISTING, PERSON, annotation_mask, listed_pairs
from seglib.infra.errors import DataError, first_line
from seglib.infra.io import is_within, open_image

BRUSH = "brushlabels"
POLYGON = "polygonlabels"
PHOTO_FIELD = "seglib_photo"  # a task's photo, relative to the image folder: what `seglib label export` writes
UPLOAD_PREFIX = re.compile(r"[0-9a-f]{8}-(.+)")  # Label Studio renames an uploaded photo.jpg to 1a2b3c4d-photo.jpg
EXIF_ORIENTATION = 0x0112
# the PIL transposition that shows a stored photo as viewers do (EXIF orientation 2-8), and the one that undoes it
SHOWN = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}
STORED = {**SHOWN, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def shown_orientation(mask: np.ndarray, orientation: int) -> np.ndarray:
    """A mask over a photo's stored pixels, turned as viewers show the photo (its EXIF `orientation`)."""
    return _transposed(mask, SHOWN.get(orientation))


def stored_orientation(mask: np.ndarray, orientation: int) -> np.ndarray:
    """A mask over the photo as viewers show it (EXIF `orientation` applied), turned back to its stored pixels."""
    return _transposed(mask, STORED.get(orientation))


def _transposed(mask: np.ndarray, method) -> np.ndarray:
    if method is None:
        return mask
    return np.asarray(Image.fromarray(mask).transpose(method))


def read_export(json_path: str | Path) -> list[dict]:
    """The export's tasks, checked to be a list of objects with `data`."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"{json_path}: Label Studio export not found")
    try:
        tasks = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{json_path}: not a readable JSON file ({first_line(exc)})") from None
    if not isinstance(tasks, list) or not tasks:
        raise DataError(f"{json_path}: not a Label Studio JSON export (a list of tasks); export the project in the "
                        "JSON format")
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(f"{json_path}: tasks[{index}] has no data (the photo's URL); export the project in the "
                            "JSON format, not JSON-MIN or CSV")
    return tasks


def task_photo(task: dict, images_dir: Path, where: str) -> Path:
    """The photo of a task, inside `images_dir` (see the module's docstring); a DataError naming it when absent."""
    data = task["data"]
    given = data.get(PHOTO_FIELD)
    if isinstance(given, str) and given:
        photo = images_dir / given
        if not is_within(photo, images_dir) or not photo.is_file():
            raise DataError(f"{where}: its photo {given!r} ({PHOTO_FIELD}) is not in {images_dir}; give the folder "
                            "the photos were exported from with --images")
        return photo
    url = data.get("image")
    if not isinstance(url, str):
        found = [v for k, v in data.items() if isinstance(v, str) and k != PHOTO_FIELD]
        url = found[0] if len(found) == 1 else None
    if not url:
        raise DataError(f"{where}: its data names no photo (no 'image' field holding a URL)")
    parts = urlsplit(url)
    path = parse_qs(parts.query).get("d", [parts.path])[0]
    tail = [p for p in PurePosixPath(unquote(path)).parts if p not in ("/", "..", ".")]
    if tail and (upload := UPLOAD_PREFIX.fullmatch(tail[-1])):
        tails = [tail, [upload.group(1)]]
    else:
        tails = [tail]
    for name in tails:
        for start in range(len(name)):
            photo = images_dir.joinpath(*name[start:])
            if photo.is_file() and is_within(photo, images_dir):
                return photo
    raise DataError(f"{where}: its photo {url!r} is not in {images_dir} (looked for {tail[-1] if tail else url!r});"
                    " give the folder holding the photos with --images")


def chosen_annotation(task: dict) -> dict | None:
    """The annotation read: not skipped, the ground-truth one first, else the last updated; None when none."""
    done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    return max(done, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or a.get("created_at") or
                                                                     ""), str(a.get("id", ""))))


def region_mask(result, size: tuple[int, int], where: str) -> np.ndarray | None:
    """One result of an annotation as a HxW 0/1 mask over the photo as shown (`size`: width, height); None for a
    result that draws no region (a choice, a text). A region of another label, or one seglib cannot draw, is a
    DataError."""
    if not isinstance(result, dict):
        raise DataError(f"{where}: not an object with a type and a value")
    kind, value = str(result.get("type", "")).lower(), result.get("value")
    if kind not in (BRUSH, POLYGON):
        if kind.endswith("labels"):
            raise DataError(f"{where}: a {kind} region; seglib reads person regions drawn with the brush or as "
                            "polygons: redraw it as one, or delete it")
        return None
    if not isinstance(value, dict):
        raise DataError(f"{where}: a {kind} region without a value")
    labels = value.get(kind)
    unknown = [label for label in labels if str(label).lower() != PERSON] if isinstance(labels, list) else [labels]
    if unknown or not labels:
        shown = repr(unknown[0]) if unknown else "no label"
        raise DataError(f"{where}: labelled {shown}, not {PERSON!r}; seglib reads person masks: relabel or delete "
                        "the region in Label Studio and export again")
    if result.get("image_rotation") not in (None, 0):
        raise DataError(f"{where}: drawn on the photo rotated by {result['image_rotation']} degrees in the editor; "
                        "undo the rotation and export again")
    width, height = size
    given = (result.get("original_width"), result.get("original_height"))
    if given != (None, None) and given != (width, height):
        raise DataError(f"{where}: drawn on a {given[0]}x{given[1]} image, but the photo is {width}x{height}; "
                        "is --images the folder the photos were labelled from?")
    if kind == BRUSH:
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise DataError(f"{where}: a brush region without RLE (format {value.get('format')!r})")
        return decode_mask(value["rle"], height, width, where)
    points = value.get("points")
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise DataError(f"{where}: polygon points {str(points)[:40]} are not a list of [x, y] pairs")
    try:
        flat = [float(v) * scale / 100 for x, y in points for v, scale in ((x, width), (y, height))]
    except (TypeError, ValueError):
        raise DataError(f"{where}: polygon points are not numbers") from None
    return annotation_mask([flat], height, width, where)


def task_mask(annotation: dict, photo: Path, where: str) -> np.ndarray:
    """An annotation's person mask (uint8 0/1) over the photo's stored pixels."""
    with open_image(photo) as img:
        stored_size = img.size
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
    size = stored_size[::-1] if orientation in (5, 6, 7, 8) else stored_size  # as a browser shows it
    mask = np.zeros((size[1], size[0]), np.uint8)
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise DataError(f"{where}: its result is not a list of regions")
    for index, result in enumerate(results):
        region = region_mask(result, size, f"{where}, region {index + 1}")
        if region is not None:
            mask |= region
    return stored_orientation(mask, orientation)


def rasterise_labelstudio(json_path: str | Path, images_dir: str | Path,
                          out_dir: Path) -> tuple[pd.DataFrame, tuple[tuple[str, str], ...]]:
    """Write `out_dir/<photo stem>.png` (0/255) for every labelled task and `out_dir/pairs.csv`; returns the pairs
    (id, image_path, mask_path) and the (photo or task, why) of each task left out. Every task's photo is found
    before the first mask is drawn."""
    # 1. the export, each labelled task's photo and annotation
    json_path, images_dir = Path(json_path), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: folder not found (the photos of {json_path})")
    tasks = read_export(json_path)
    chosen, left_out, by_photo, by_stem = [], [], {}, {}
    for index, task in enumerate(tasks):
        where = f"{json_path}: task {task.get('id', f'[{index}]')}"
        annotation = chosen_annotation(task)
        if annotation is None:
            skipped = any(isinstance(a, dict) and a.get("was_cancelled") for a in task.get("annotations") or [])
            left_out.append((str(task["data"].get(PHOTO_FIELD) or task["data"].get("image") or where),
                             "skipped in Label Studio" if skipped else "not labelled yet"))
            continue
        photo = task_photo(task, images_dir, where)
        for seen, key, what in ((by_photo, photo.resolve(), "label the same photo"),
                                (by_stem, photo.stem, f"have photos sharing the stem {photo.stem!r} (masks are named "
                                                      "by stem: rename one)")):
            if key in seen:
                raise DataError(f"{seen[key]} and {where.split(': ', 1)[1]} {what}")
            seen[key] = where
        chosen.append((where, photo, annotation))
    if not chosen:
        raise DataError(f"{json_path}: none of its {len(tasks)} tasks is labelled (a task that holds predictions "
                        "only is not); label them in Label Studio and export again")
    # 2. the masks (a region that cannot be read stops here: `data add` draws into a folder of its own) and
    # their listing
    out_dir.mkdir(parents=True, exist_ok=True)
    for where, photo, annotation in chosen:
        Image.fromarray(task_mask(annotation, photo, where) * 255).save(out_dir / f"{photo.stem}.png")
    relative = [photo.resolve().relative_to(images_dir.resolve()).as_posix() for _, photo, _ in chosen]
    table = pd.DataFrame({"id": [photo.stem for _, photo, _ in chosen], "image": relative,
                          "mask": [f"{photo.stem}.png" for _, photo, _ in chosen]})
    table.to_csv(out_dir / LISTING, index=False)
    return listed_pairs(images_dir, out_dir), tuple(left_out)
