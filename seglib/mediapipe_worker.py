"""Worker run by `seglib.anchors` inside the separate mediapipe environment (numpy<2): not imported by seglib.

Usage: python mediapipe_worker.py FOLDER MODEL_SELECTION. Reads FOLDER/<i>.png (RGB photos at the size they are
scored at), writes FOLDER/<i>.npy (person probability, float32, same height and width) and FOLDER/times.json
(seconds spent in MediaPipe per image). Only numpy, OpenCV and mediapipe are imported.
"""

import json
import sys
import time
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np


def main(folder: Path, model_selection: int) -> int:
    segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
    times = []
    for png in sorted(folder.glob("*.png"), key=lambda p: int(p.stem)):
        rgb = cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        start = time.perf_counter()
        result = segmenter.process(rgb)
        times.append(time.perf_counter() - start)
        np.save(folder / f"{png.stem}.npy", np.asarray(result.segmentation_mask, dtype=np.float32))
    (folder / "times.json").write_text(json.dumps(times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), int(sys.argv[2])))
