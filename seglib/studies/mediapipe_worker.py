"""Worker run by `seglib.studies.anchors` inside the separate mediapipe environment (numpy<2): not imported by seglib.

Usage: python mediapipe_worker.py FOLDER MODEL. MODEL is the selfie segmenter's model_selection (0 or 1) or `pose`
(MediaPipe Pose's person mask: static images, model_complexity=1, segmentation on). Reads FOLDER/<i>.png (RGB
photos at the size they are scored at), writes FOLDER/<i>.npy (person probability, float32, same height and
width), FOLDER/times.json (seconds spent in MediaPipe per image) and FOLDER/found.json (per image, whether the model
found a person: Pose finds one or none, and where it finds none its mask is all zero; the selfie segmenter always
answers). Only numpy, OpenCV and mediapipe are imported.

`python mediapipe_worker.py --folder IN OUT MODEL_SELECTION`: what a user of MediaPipe's runtime does with a folder
of photos (the folder benchmark times it whole): decode each photo of IN, segment it with the selfie segmenter,
write OUT/<stem>.mask.png (0/255, threshold 0.5).
"""

import json
import sys
import time
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

POSE = "pose"  # the MODEL argument that selects MediaPipe Pose (seglib.studies.anchors.POSE)


def segmenter(model: str):
    """A function RGB photo -> (person probability or None when no person was found)."""
    if model == POSE:
        pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
        return lambda rgb: pose.process(rgb).segmentation_mask
    selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=int(model))
    return lambda rgb: selfie.process(rgb).segmentation_mask


def main(folder: Path, model: str) -> int:
    segment = segmenter(model)
    times, found = [], []
    for png in sorted(folder.glob("*.png"), key=lambda p: int(p.stem)):
        rgb = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        start = time.perf_counter()
        mask = segment(rgb)
        times.append(time.perf_counter() - start)
        found.append(mask is not None)
        prob = np.zeros(rgb.shape[:2], np.float32) if mask is None else np.asarray(mask, dtype=np.float32)
        np.save(folder / f"{png.stem}.npy", prob)
    (folder / "times.json").write_text(json.dumps(times))
    (folder / "found.json").write_text(json.dumps(found))
    return 0


def masks_for_folder(photos: Path, out: Path, model_selection: int) -> int:
    segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
    out.mkdir(parents=True, exist_ok=True)
    for photo in sorted(p for p in photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        rgb = cv2.cvtColor(cv2.imread(str(photo), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        prob = segmenter.process(rgb).segmentation_mask
        cv2.imwrite(str(out / f"{photo.stem}.mask.png"), ((prob >= 0.5) * 255).astype(np.uint8))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--folder":
        raise SystemExit(masks_for_folder(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
    raise SystemExit(main(Path(sys.argv[1]), sys.argv[2]))
