"""Person masks from a COCO-format annotation file (what CVAT, Label Studio and Roboflow export).

Every image the file lists gets one 0/255 mask: the union of its `person` annotations, polygons and RLE alike
(`iscrowd` regions included: they are people too), rasterised by pycocotools, the COCO API's own code. An image
with no person annotation gets an empty mask (a photo without people is a valid example).

The file is checked as it is read, each problem one line naming the JSON and the entry (`image 3`, `annotation 12`,
or `images[0]` where the entry has no usable id): every image an object with an id of its own, a `file_name` that
is a photo inside the image folder (subfolders kept; `..`, absolute paths and links that lead outside refused) and
a size of positive whole numbers that is the photo's; every annotation, person or not, naming an image of the file;
polygons of finite points no further outside the image than its own size; RLE whose size is the image's and whose
counts (whole numbers 0 or more, or COCO's compressed string) cover exactly its pixels. Every photo in a folder the
file takes photos from must be listed: one left out is named.

The masks are named by the photo's file stem (unique in the file: it is the pair's id); `pairs.csv`, written beside
them, pairs each with its photo (relative to the image folder), so a photo in a subfolder pairs with its own mask.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from seglib.infra.errors import DataError, first_line
from seglib.infra.io import is_within, open_image

PERSON = "person"
LISTING = "pairs.csv"  # beside the masks: id, image (relative to the image folder), mask (relative to its folder)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Listed:
    """One image of the file, checked: its id, its photo inside the image folder, and the size the file gives it."""

    id: int | str
    stem: str  # the pair's id and its mask's name
    relative: str  # the photo, relative to the image folder (links resolved)
    photo: Path  # the image folder / relative
    height: int
    width: int


def read_coco(json_path: str | Path) -> dict:
    """The parsed file, with its images, annotations and categories checked to be there."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO file not found")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{json_path}: not a readable JSON file ({first_line(exc)})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):
        raise DataError(f"{json_path}: not a COCO annotation file (needs lists images, annotations, categories)")
    return data


def person_category_ids(data: dict, json_path: Path) -> set:
    """The ids of the categories named (or under the supercategory) `person`."""
    ids = set()
    for index, category in enumerate(data["categories"]):
        if not isinstance(category, dict):
            raise DataError(f"{json_path}: categories[{index}]: not an object with an id and a name")
        if PERSON in (str(category.get("name", "")).lower(), str(category.get("supercategory", "")).lower()):
            if not _is_id(category.get("id")):
                raise DataError(f"{json_path}: {_entry('category', category, index)}: id {_shown(category.get('id'))}"
                                " is not an id (a whole number or text)")
            ids.add(category["id"])
    if not ids:
        names = sorted(str(c.get("name")) for c in data["categories"])[:5]
        raise DataError(f"{json_path}: no '{PERSON}' category (categories: {', '.join(names) or 'none'})")
    return ids


def checked_images(data: dict, json_path: Path, images_dir: Path) -> list[Listed]:
    """Every image of the file, checked one by one and against each other (ids, photos and stems each once)."""
    if not data["images"]:
        raise DataError(f"{json_path}: lists no images")
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: folder not found (the photos of {json_path})")
    listed: list[Listed] = []
    by_id: dict = {}
    by_photo: dict[Path, Listed] = {}
    by_stem: dict[str, Listed] = {}
    for index, entry in enumerate(data["images"]):
        image = _checked_image(entry, index, json_path, images_dir)
        for seen, key, what, fix in (
                (by_id, image.id, f"image id {_shown(image.id)}", "give each image its own id"),
                (by_photo, image.photo.resolve(), f"the photo {image.photo}", "list each photo once"),
                (by_stem, image.stem, f"the file stem {image.stem!r}", "masks are named by stem: rename one photo")):
            if key in seen:
                raise DataError(f"{json_path}: {seen[key].relative} and {image.relative} share {what}; {fix}")
            seen[key] = image
        listed.append(image)
    return listed


def _checked_image(entry, index: int, json_path: Path, images_dir: Path) -> Listed:
    """One image entry: an object with an id, a file_name inside `images_dir` that is there, and its size."""
    where = f"{json_path}: {_entry('image', entry, index)}"
    # 1. an object with an id
    if not isinstance(entry, dict):
        raise DataError(f"{where}: not an object with an id, a file_name, a height and a width")
    if not _is_id(entry.get("id")):
        raise DataError(f"{where}: id {_shown(entry.get('id'))} is not an id (a whole number or text)")
    # 2. its photo, inside the image folder
    name = entry.get("file_name")
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        raise DataError(f"{where}: file_name {_shown(name)} is not a photo's path")
    photo = images_dir / name
    try:
        inside, there = is_within(photo, images_dir), photo.is_file()
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: file_name {name!r} cannot be read ({first_line(exc)})") from None
    if not inside:
        raise DataError(f"{where}: file_name {name!r} leads outside the image folder {images_dir} (to "
                        f"{photo.resolve()}); give paths inside --images (subfolders are fine)")
    if not there:
        raise DataError(f"{photo}: listed in {json_path} ({_entry('image', entry, index)}) but not found")
    relative = photo.resolve().relative_to(images_dir.resolve()).as_posix()
    # 3. its size: positive whole numbers, the photo's own
    size = {}
    for key in ("height", "width"):
        value = entry.get(key)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DataError(f"{where}: {key} {_shown(value)} is not a positive whole number")
        size[key] = value
    with open_image(images_dir / relative) as img:
        if img.size != (size["width"], size["height"]):
            raise DataError(f"{photo}: is {img.size[0]}x{img.size[1]}, {json_path} ({_entry('image', entry, index)})"
                            f" says {size['width']}x{size['height']}")
    return Listed(entry["id"], Path(name).stem, relative, images_dir / relative, size["height"], size["width"])


def person_annotations(data: dict, json_path: Path, listed: list[Listed], people: set) -> dict:
    """(where, segmentation) of each person annotation, by image id. Every annotation, person or not, must name an
    image of the file: one that names none would silently leave its person out."""
    ids = {image.id for image in listed}
    found: dict = {}
    for index, ann in enumerate(data["annotations"]):
        where = f"{json_path}: {_entry('annotation', ann, index)}"
        if not isinstance(ann, dict):
            raise DataError(f"{where}: not an object with an image_id, a category_id and a segmentation")
        image_id, category = ann.get("image_id"), ann.get("category_id")
        if not _is_id(image_id) or image_id not in ids:
            raise DataError(f"{where} names image_id {_shown(image_id)}, which no image of the file has; fix its "
                            "image_id or list its image")
        if not _is_id(category):
            raise DataError(f"{where}: category_id {_shown(category)} is not an id (a whole number or text)")
        if category in people:
            found.setdefault(image_id, []).append((where, ann.get("segmentation")))
    return found


def refuse_unlisted(listed: list[Listed], images_dir: Path, json_path: Path) -> None:
    """A DataError naming a photo that lies in a folder the file takes photos from but is not listed in it (it
    would silently be no part of the set), with the count of the others."""
    photos = {image.photo.resolve() for image in listed}
    folders = sorted({Path(image.relative).parent for image in listed})
    left_out = [path for folder in folders for path in sorted((images_dir / folder).iterdir())
                if path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith(".") and path.is_file()
                and path.resolve() not in photos]
    if left_out:
        more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
        raise DataError(f"{left_out[0]}: lies among the photos {json_path} lists but is not listed in it{more}; "
                        "list every photo of the folder in the COCO file (one without people gets an empty mask) "
                        "or move it out")


def annotation_mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """One annotation's region as a uint8 0/1 array: polygons, uncompressed RLE (counts a list) or compressed RLE,
    each checked before pycocotools reads it (it trusts its input: a count too many or too few reads memory
    outside the mask)."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):  # polygons: [[x1, y1, x2, y2, ...], ...]
        polygons = _polygons(segmentation, height, width, where)
        if not polygons:
            return np.zeros((height, width), np.uint8)
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (list, str)):
        size, counts = segmentation.get("size"), segmentation["counts"]
        if not isinstance(size, list) or size != [height, width] or not all(_is_whole(v) for v in size):
            raise DataError(f"{where}: RLE size {_shown(size)} is not its image's [height, width], "
                            f"[{height}, {width}]")
        _check_counts(_string_counts(counts, where) if isinstance(counts, str) else counts, height, width, where)
        rle = ({"size": [height, width], "counts": counts.encode("ascii")} if isinstance(counts, str)
               else coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width))
    else:
        raise DataError(f"{where}: segmentation {_shown(segmentation)} is neither polygons nor RLE (size and counts)")
    try:
        mask = coco_mask.decode(rle)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: unreadable segmentation ({first_line(exc)})") from None
    return mask.reshape(height, width).astype(np.uint8)


def _polygons(segmentation: list, height: int, width: int, where: str) -> list[list]:
    """The polygons pycocotools can draw: lists of x, y pairs of finite numbers, no point further outside the
    image than its own size; a polygon of fewer than three points (no area) is left out."""
    polygons = []
    for polygon in segmentation:
        if (not isinstance(polygon, list) or len(polygon) % 2
                or not all(_is_whole(v) or (isinstance(v, float) and math.isfinite(v)) for v in polygon)):
            raise DataError(f"{where}: polygon {_shown(polygon)} is not a list of x, y pairs of finite numbers")
        if not (all(-width <= x <= 2 * width for x in polygon[0::2])
                and all(-height <= y <= 2 * height for y in polygon[1::2])):
            raise DataError(f"{where}: a polygon point lies further outside the {width}x{height} image than its own "
                            "size")
        if len(polygon) >= 6:
            polygons.append(polygon)
    return polygons


def _string_counts(text: str, where: str) -> list[int]:
    """The run lengths of COCO's compressed RLE string, read as pycocotools' rleFrString reads them: 5 bits a
    character from '0', a continuation bit, a sign bit on the last, each count after the second a difference."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position == len(text):
                raise DataError(f"{where}: compressed RLE counts end in the middle of a number")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise DataError(f"{where}: compressed RLE counts hold {text[position]!r}, outside COCO's alphabet "
                                "('0' to 'o')")
            value |= (code & 0x1F) << shift
            more, position, shift = bool(code & 0x20), position + 1, shift + 5
            if not more and code & 0x10:
                value |= -1 << shift
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
    return counts


def _check_counts(counts: list, height: int, width: int, where: str) -> None:
    """Run lengths are whole numbers 0 or more that add up to the image's pixels."""
    bad = [c for c in counts if not _is_whole(c) or c < 0]
    if bad:
        raise DataError(f"{where}: RLE counts hold {_shown(bad[0])}; run lengths are whole numbers 0 or more")
    if sum(counts) != height * width:
        raise DataError(f"{where}: RLE counts cover {sum(counts)} pixels, not the {height * width} of its "
                        f"{width}x{height} image")


def rasterise_coco(json_path: str | Path, images_dir: str | Path, out_dir: Path) -> pd.DataFrame:
    """Write `out_dir/<image stem>.png` (0/255) for every image of the file and `out_dir/pairs.csv`; returns the
    pairs (id, image_path, mask_path). Nothing is drawn before the file's images and annotations are checked."""
    # 1. the file: its categories, images and annotations
    json_path, images_dir = Path(json_path), Path(images_dir)
    data = read_coco(json_path)
    people = person_category_ids(data, json_path)
    listed = checked_images(data, json_path, images_dir)
    by_image = person_annotations(data, json_path, listed, people)
    refuse_unlisted(listed, images_dir, json_path)
    # 2. one mask per image
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in listed:
        mask = np.zeros((image.height, image.width), np.uint8)
        for where, segmentation in by_image.get(image.id, []):
            mask |= annotation_mask(segmentation, image.height, image.width, where)
        Image.fromarray(mask * 255).save(out_dir / f"{image.stem}.png")
    # 3. the pairs, beside the masks
    table = pd.DataFrame([(image.stem, image.relative, f"{image.stem}.png") for image in listed],
                         columns=["id", "image", "mask"])
    table.to_csv(out_dir / LISTING, index=False)
    return _items(table, images_dir, out_dir)


def listed_pairs(images_dir: str | Path, masks_dir: str | Path) -> pd.DataFrame | None:
    """A COCO set's pairs (id, image_path, mask_path) as `rasterise_coco` listed them, or None for masks made before
    it wrote `pairs.csv` (those pair by file stem with the photos at the top of the image folder)."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    listing = masks_dir / LISTING
    if not listing.is_file():
        return None
    try:
        table = pd.read_csv(listing, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{listing}: unreadable ({first_line(exc)}); register the set again") from None
    if list(table.columns) != ["id", "image", "mask"]:
        raise DataError(f"{listing}: expected the columns id, image, mask; register the set again")
    items = _items(table, images_dir, masks_dir)
    absent = [path for path in (*items["image_path"], *items["mask_path"]) if not path.is_file()]
    if absent:
        raise DataError(f"{absent[0]}: listed in {listing} but not found"
                        f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}")
    return items


def _items(table: pd.DataFrame, images_dir: Path, masks_dir: Path) -> pd.DataFrame:
    return pd.DataFrame({"id": list(table["id"]), "image_path": [images_dir / p for p in table["image"]],
                         "mask_path": [masks_dir / m for m in table["mask"]]})


def _is_id(value) -> bool:
    """A COCO id: a whole number or text (not true/false, not a number with a fraction, not a list)."""
    return _is_whole(value) or isinstance(value, str)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(kind: str, entry, index: int) -> str:
    """How a message names an entry: `image 3` by its id, else `images[0]` by its place in the list."""
    ident = entry.get("id") if isinstance(entry, dict) else None
    plural = "categories" if kind == "category" else f"{kind}s"
    return f"{kind} {_shown(ident)}" if _is_id(ident) else f"{plural}[{index}]"


def _shown(value) -> str:
    """A value as a message quotes it, cut short."""
    return reprlib.repr(value)
