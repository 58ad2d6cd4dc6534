"""Person masks from a COCO-format annotation file (what CVAT, Label Studio and Roboflow export).

Every image the file lists gets one 0/255 mask: the union of its `person` annotations, polygons and RLE alike
(`iscrowd` regions included: they are people too), rasterised by pycocotools, the COCO API's own code. An image
with no person annotation gets an empty mask (a photo without people is a valid example).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from seglib.config import display_path
from seglib.errors import DataError

PERSON = "person"


def read_coco(json_path: str | Path) -> dict:
    """The parsed file, with its images, annotations and categories checked to be there."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO file not found")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{json_path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):
        raise DataError(f"{json_path}: not a COCO annotation file (needs lists images, annotations, categories)")
    return data


def person_category_ids(data: dict, json_path: Path) -> set[int]:
    """The ids of the categories named (or under the supercategory) `person`."""
    ids = {c.get("id") for c in data["categories"] if isinstance(c, dict)
           and PERSON in (str(c.get("name", "")).lower(), str(c.get("supercategory", "")).lower())}
    if not ids:
        names = sorted(str(c.get("name")) for c in data["categories"] if isinstance(c, dict))[:5]
        raise DataError(f"{json_path}: no '{PERSON}' category (categories: {', '.join(names) or 'none'})")
    return ids


def annotation_mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """One annotation's region as a uint8 0/1 array: polygons, uncompressed RLE (counts a list) or compressed RLE."""
    from pycocotools import mask as coco_mask

    try:
        if isinstance(segmentation, list):  # polygons: [[x1, y1, x2, y2, ...], ...]
            polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
            if not polygons:
                return np.zeros((height, width), np.uint8)
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
        else:
            raise TypeError("neither polygons nor RLE")
        mask = coco_mask.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{where}: unreadable segmentation ({exc})") from None
    if mask.shape[:2] != (height, width):
        raise DataError(f"{where}: its RLE is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}")
    return mask.reshape(height, width).astype(np.uint8)


def rasterise_coco(json_path: str | Path, images_dir: str | Path, out_dir: Path) -> int:
    """Write `out_dir/<image stem>.png` (0/255) for every image of the file; returns the number of masks.

    Each listed image must exist under `images_dir` at its `file_name`, with the size the file gives it."""
    json_path, images_dir = Path(json_path), Path(images_dir)
    data = read_coco(json_path)
    people = person_category_ids(data, json_path)
    by_image: dict = {}
    for ann in data["annotations"]:
        if isinstance(ann, dict) and ann.get("category_id") in people:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for image in data["images"]:
        name = str(image.get("file_name", ""))
        photo = images_dir / name
        if not name or not photo.is_file():
            raise DataError(f"{photo}: listed in {json_path.name} (image id {image.get('id')}) but not found")
        stem = Path(name).stem
        if stem in stems:
            raise DataError(f"{json_path}: {stems[stem]} and {name} share the file stem {stem!r}; rename one")
        stems[stem] = name
        height, width = int(image.get("height", 0)), int(image.get("width", 0))
        with Image.open(photo) as img:
            if img.size != (width, height):
                raise DataError(f"{photo}: is {img.size[0]}x{img.size[1]}, {json_path.name} says {width}x{height}")
        mask = np.zeros((height, width), np.uint8)
        for ann in by_image.get(image.get("id"), []):
            where = f"{display_path(json_path)}: annotation {ann.get('id')}"
            mask |= annotation_mask(ann.get("segmentation"), height, width, where)
        Image.fromarray(mask * 255).save(out_dir / f"{stem}.png")
    if not stems:
        raise DataError(f"{json_path}: lists no images")
    return len(stems)
