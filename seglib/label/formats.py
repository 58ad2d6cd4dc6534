"""Pre-labels in the annotation tools' own formats: a COCO file (CVAT, and `seglib data add --coco`) and Label
Studio tasks with predictions, plus the labelling configuration of a Label Studio project that shows them.

COCO: one `person` category; per photo an image entry (its path inside the folder, its stored size) and, when the
mask holds a person, one annotation: compressed RLE (`iscrowd` 1, as CVAT writes masks; exact) or polygons (the
outlines of the mask's parts, `iscrowd` 0; holes and specks of fewer than three points are lost). COCO sizes and
pixels are the photo's as stored, as pycocotools and `data add --coco` read them.

Label Studio: per photo a task whose `data` holds the photo's URL (`image`) and its path inside the folder
(`seglib_photo`, which `data add --labelstudio` reads back), and one prediction: a brush region labelled `person`
in Label Studio's RLE (`seglib.data.brush`) over the photo as a browser shows it (EXIF rotation applied), with a
score that follows the labelling order (Label Studio's "uncertainty" sampling then serves the photos in it).
"""

from __future__ import annotations

from urllib.parse import quote

import numpy as np

from seglib.data.brush import encode_mask
from seglib.data.coco import PERSON
from seglib.data.labelstudio import BRUSH, PHOTO_FIELD

RLE, POLYGONS = "rle", "polygons"  # how a COCO annotation gives its mask
ENCODINGS = (RLE, POLYGONS)
PERSON_CATEGORY = 1
IMAGE_TAG, BRUSH_TAG, POLYGON_TAG = "image", "person_brush", "person_outline"  # the labelling config's names
LABELLING_CONFIG = f"""<View>
  <Header value="Correct the person mask: brush or erase, or outline with a polygon"/>
  <Image name="{IMAGE_TAG}" value="${IMAGE_TAG}" zoom="true" zoomControl="true"/>
  <BrushLabels name="{BRUSH_TAG}" toName="{IMAGE_TAG}">
    <Label value="{PERSON}" background="#e4572e"/>
  </BrushLabels>
  <PolygonLabels name="{POLYGON_TAG}" toName="{IMAGE_TAG}" strokeWidth="2" pointSize="small">
    <Label value="{PERSON}" background="#29335c"/>
  </PolygonLabels>
</View>
"""


def coco_annotation(mask: np.ndarray, image_id: int, encoding: str = RLE) -> dict | None:
    """The COCO annotation of a photo's mask (HxW, nonzero = person, stored orientation); None when it is empty."""
    from pycocotools import mask as coco_mask

    binary = np.asfortranarray((np.asarray(mask) != 0).astype(np.uint8))
    rle = coco_mask.encode(binary)
    area = int(coco_mask.area(rle))
    if not area:
        return None
    if encoding == RLE:
        segmentation, crowd = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, 1
    elif encoding == POLYGONS:
        segmentation, crowd = mask_polygons(binary), 0
    else:
        raise ValueError(f"encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
    bbox = [round(float(v), 2) for v in coco_mask.toBbox(rle)]
    return {"id": image_id, "image_id": image_id, "category_id": PERSON_CATEGORY, "segmentation": segmentation,
            "area": area, "bbox": bbox, "iscrowd": crowd}


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """The outer outline of each part of a 0/1 mask as COCO polygons ([x1, y1, x2, y2, ...], pixel centres)."""
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[float(v) for v in contour.reshape(-1)] for contour in contours if len(contour) >= 3]


def coco_document(images: list[dict], annotations: list[dict], description: str) -> dict:
    """A COCO file of `images` (id, file_name, height, width) and their `annotations`, the person category."""
    return {"info": {"description": description, "version": "1.0"}, "licenses": [],
            "categories": [{"id": PERSON_CATEGORY, "name": PERSON, "supercategory": PERSON}],
            "images": images, "annotations": annotations}


def coco_image(image_id: int, relative: str, height: int, width: int) -> dict:
    return {"id": image_id, "file_name": relative, "height": int(height), "width": int(width)}


def labelstudio_task(relative: str, url: str, mask: np.ndarray, *, model_version: str,
                     score: float | None = None) -> dict:
    """A Label Studio task of one photo (`relative`: its path inside the folder; `url`: where Label Studio loads
    it) with its mask (HxW, nonzero = person, as a browser shows the photo) as a brush prediction."""
    height, width = mask.shape
    region = {"from_name": BRUSH_TAG, "to_name": IMAGE_TAG, "type": BRUSH, "original_width": int(width),
              "original_height": int(height), "image_rotation": 0,
              "value": {"format": "rle", "rle": encode_mask(mask), BRUSH: [PERSON]}}
    prediction = {"model_version": model_version, "result": [region] if np.any(mask) else []}
    if score is not None and np.isfinite(score):
        prediction["score"] = round(float(score), 6)
    return {"data": {IMAGE_TAG: url, PHOTO_FIELD: relative}, "predictions": [prediction]}


def photo_url(prefix: str, relative: str) -> str:
    """Where Label Studio loads a photo: `prefix` followed by its path inside the folder, URL-quoted."""
    return prefix + quote(relative, safe="/")


def local_files_prefix(folder_name: str) -> str:
    """The default URL prefix: Label Studio's local-files route, for a document root that holds the folder."""
    return f"/data/local-files/?d={quote(folder_name, safe='')}/"
