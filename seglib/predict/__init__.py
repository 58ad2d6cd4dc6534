"""Prediction on any photo or video: letterbox -> model -> probabilities mapped back to the input's exact size.

Python API (the notebooks use it too):

- `Predictor`: a trained model plus its input size, normalisation, threshold and TTA, by default those chosen on
  val (`Predictor.from_run(name)`, `.from_checkpoint(path)`, `.from_onnx(path)`; `predict_proba`,
  `predict_mask`, `alpha`, `cutout`, `replace_background`); `InferenceOptions(scales=(256, 448), max_upscale=1.5,
  second_look=True, refine=True)` its prediction-time levers (`inference=`), and `adopt_inference(run, options)`
  makes levers scored on val a run's default.
- `collect_inputs(paths)` and `load_input(path)`: inputs (`seglib.predict.inputs`).
- `predict_files(predictor, inputs, out_dir, OutputChoice(...))`: masks, overlays, cut-outs and composites of
  photos and videos, bad inputs reported and skipped -> `PredictReport` (`seglib.predict.files`).
- `overlay_mask`, `figure_alpha`, `cutout_rgba`, `parse_background`, `composite` (`seglib.predict.outputs`);
  video and temporal smoothing in `seglib.predict.video` and `seglib.predict.smoothing`.

Command line: `seglib predict (--run NAME | --checkpoint PATH | --onnx FILE) INPUT... --out DIR`.
"""

from __future__ import annotations

import importlib

# name -> the module that defines it; imported on first use, so that `seglib predict` can read its inputs and
# say what it will do before torch is imported (`seglib.predict.inputs` needs numpy and Pillow only)
_DEFINED_IN = {
    **dict.fromkeys(("BACKGROUND_SUFFIX", "CUTOUT_SUFFIX", "MASK_SUFFIX", "OVERLAY_SUFFIX", "OutputChoice", "Planned",
                     "PredictReport", "plan_outputs", "predict_files", "refuse_existing"), "files"),
    **dict.fromkeys(("VIDEO_SUFFIXES", "collect_inputs", "exif_orientation", "frame_count", "is_video",
                     "load_input"), "inputs"),
    **dict.fromkeys(("Background", "composite", "cutout_rgba", "draw_outputs", "figure_alpha", "overlay_mask",
                     "parse_background",
                     "save_jpeg_atomic"), "outputs"),
    "Predictor": "predictor",
    "InferenceOptions": "levers",
    **dict.fromkeys(("ValChoice", "adopt_inference", "val_protocol"), "val_choice"),
}
__all__ = sorted(_DEFINED_IN)


def __getattr__(name: str):
    module = _DEFINED_IN.get(name)
    if module is None:
        raise AttributeError(f"module 'seglib.predict' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"seglib.predict.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DEFINED_IN))
