"""`make bench`: how fast we train and predict, and the shipped model side by side with MediaPipe.

Two parts, each optional (`seglib bench --only`), written together to reports/bench/bench.json and bench.md
(a part not measured this time keeps its numbers from the previous bench.json):

- training: training, data-pipeline and prediction speed of our `cpu` profile vs the course configuration,
  each configuration in its own subprocess (so its peak memory is its own);
- prediction: one checkpoint (default the committed reference) on the test photos at the size they are scored
  at, end to end per photo (decode excluded; letterbox, model, TTA, probabilities back at the photo's size and
  the mask included) in PyTorch and, exported, in ONNX Runtime, next to MediaPipe off the shelf run by its own
  runtime in its own environment (`seglib.studies.anchors`); ms per photo (median, p90), mean IoU scored by
  `seglib.evaluate`, FLOPs per photo, and the ONNX-vs-PyTorch parity of the mean IoU;
- folder: the `seglib predict` command on a folder of photos (the checkpoint with and without flip TTA and,
  where it exists, the 256 px model) against MediaPipe's runtime on the same folder, end to end, idle and with one core busy (`seglib.studies.bench.folder`; written to folder.json and folder.md).

A benchmark, not a test: nothing asserts.
"""

from __future__ import annotations

from pathlib import Path

from seglib.infra import paths
from seglib.infra.errors import SeglibError
from seglib.infra.io import write_json_atomic, write_text_atomic
from seglib.infra.paths import display_path
from seglib.runs import read_json
from seglib.studies.bench.prediction import (
    DEFAULT_CHECKPOINT,
    FAST_CHECKPOINT,
    MEDIAPIPE,
    ONNX,
    ONNX_FAST,
    ONNX_ONE_PASS,
    ONNX_SMALL,
    PYTORCH,
    compare_predictions,
    val_protocol,
)
from seglib.studies.bench.sections import (
    markdown_table,
    prediction_findings,
    prediction_markdown,
    render_markdown,
    target_checks,
)
from seglib.studies.bench.train_speed import CONFIGS, measure, measure_training

PARTS = ("training", "prediction", "folder")


def run_all(train_steps: int = 8, predict_runs: int = 20, out_dir: Path | None = None, *,
            parts=PARTS, checkpoint=None, photos: int | None = None, mediapipe_python=None, dataset_dir=None,
            splits_dir=None, fast_checkpoint=None) -> dict:
    """Measure the parts asked for and write reports/bench/bench.json and bench.md (other parts keep their
    numbers from the previous bench.json). `fast_checkpoint`: default FAST_CHECKPOINT where it exists."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise SeglibError(f"bench parts {sorted(unknown) or 'none'}: choose from {', '.join(PARTS)}")
    checkpoint = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if ("prediction" in parts or "folder" in parts) and not checkpoint.is_file():  # before the training part spends minutes
        raise SeglibError(f"{display_path(checkpoint)}: checkpoint not found (give one with --checkpoint PATH)")
    out_dir = Path(out_dir) if out_dir else paths.reports_dir() / "bench"
    report = read_json(out_dir / "bench.json") or {}
    if "training" in parts:
        report.update(measure_training(train_steps, predict_runs))
    if "prediction" in parts:
        if fast_checkpoint is None and FAST_CHECKPOINT.is_file():
            fast_checkpoint = FAST_CHECKPOINT
        report["prediction"] = compare_predictions(checkpoint, photos=photos, mediapipe_python=mediapipe_python,
                                                   dataset_dir=dataset_dir, splits_dir=splits_dir,
                                                   fast_checkpoint=fast_checkpoint)
    if "folder" in parts:
        from seglib.studies.bench.folder import measure_folder
        from seglib.studies.bench.sections import folder_markdown

        fast = Path(fast_checkpoint) if fast_checkpoint else FAST_CHECKPOINT
        ours = [(checkpoint, ()), (checkpoint, ("--no-tta",))]
        ours += [(DEFAULT_CHECKPOINT, ())] if DEFAULT_CHECKPOINT.is_file() and \
            DEFAULT_CHECKPOINT.resolve() != checkpoint.resolve() else []  # the reference beside another model
        ours += [(fast, ())] if fast.is_file() and fast.resolve() != checkpoint.resolve() else []
        folder = measure_folder(ours, mediapipe_python=mediapipe_python, photos=photos)
        write_json_atomic(out_dir / "folder.json", folder)
        write_text_atomic(out_dir / "folder.md", folder_markdown(folder))
        if parts == ("folder",):
            return report
    write_json_atomic(out_dir / "bench.json", report)
    write_text_atomic(out_dir / "bench.md", render_markdown(report))
    return report


__all__ = ["CONFIGS", "DEFAULT_CHECKPOINT", "FAST_CHECKPOINT", "MEDIAPIPE", "ONNX", "ONNX_FAST", "ONNX_ONE_PASS",
           "ONNX_SMALL", "PARTS", "PYTORCH", "compare_predictions", "markdown_table", "measure", "measure_training",
           "prediction_findings", "prediction_markdown", "render_markdown", "run_all", "target_checks",
           "val_protocol"]
