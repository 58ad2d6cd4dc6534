"""Prediction on any photo or video: letterbox -> model -> probabilities mapped back to the input's exact size.

Python API (the notebooks use it too):

- `Predictor`: a trained model plus its input size, normalisation, threshold and TTA, by default those chosen on
  val (`Predictor.from_run(name)`, `.from_checkpoint(path)`, `.from_onnx(path)`; `predict_proba`,
  `predict_mask`, `alpha`, `cutout`, `replace_background`).
- `collect_inputs(paths)` and `load_input(path)`: inputs (`seglib.predict.inputs`).
- `predict_files(predictor, inputs, out_dir, OutputChoice(...))`: masks, overlays, cut-outs and composites of
  photos and videos, bad inputs reported and skipped -> `PredictReport` (`seglib.predict.files`).
- `overlay_mask`, `figure_alpha`, `cutout_rgba`, `parse_background`, `composite` (`seglib.predict.outputs`);
  video and temporal smoothing in `seglib.predict.video` and `seglib.predict.smoothing`.

Command line: `seglib predict (--run NAME | --checkpoint PATH | --onnx FILE) INPUT... --out DIR`.
"""

from seglib.predict.files import (
    BACKGROUND_SUFFIX,
    CUTOUT_SUFFIX,
    MASK_SUFFIX,
    OVERLAY_SUFFIX,
    OutputChoice,
    Planned,
    PredictReport,
    plan_outputs,
    predict_files,
    refuse_existing,
)
from seglib.predict.inputs import (
    VIDEO_SUFFIXES,
    collect_inputs,
    exif_orientation,
    frame_count,
    is_video,
    load_input,
)
from seglib.predict.outputs import (
    Background,
    composite,
    cutout_rgba,
    figure_alpha,
    overlay_mask,
    parse_background,
    save_jpeg_atomic,
)
from seglib.predict.predictor import Predictor
from seglib.predict.protocol import Protocol, val_protocol

__all__ = ["BACKGROUND_SUFFIX", "CUTOUT_SUFFIX", "MASK_SUFFIX", "OVERLAY_SUFFIX", "VIDEO_SUFFIXES", "Background",
           "OutputChoice", "Planned", "PredictReport", "Predictor", "Protocol", "collect_inputs", "composite",
           "cutout_rgba", "exif_orientation", "figure_alpha", "frame_count", "is_video", "load_input",
           "overlay_mask", "parse_background", "plan_outputs", "predict_files", "refuse_existing",
           "save_jpeg_atomic", "val_protocol"]
