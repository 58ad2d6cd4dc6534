"""A batch of photos and videos through the model, each output written atomically into one folder.

Per photo: `<stem>.mask.png` (0/255 at the photo's exact size as viewers show it), and as asked
`<stem>.overlay.jpg`, `<stem>.cutout.png` (RGBA, soft edge) and `<stem>.background.jpg` (the background
replaced). Per video: the same kinds as videos (`<stem>.mask.mp4`, ...; a video's cut-out stands on chroma-key
green). Bad inputs are reported and skipped -> `PredictReport`; a full disk stops the batch at the first file it
refuses. One batch writes into a folder at a time (`seglib.infra.locks`), never into a folder seglib reads data from.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import FULL_DISK_ERRNOS, check_writable_dir, save_png_atomic
from seglib.infra.locks import output_folder, reentrant
from seglib.predict.inputs import collect_inputs, frame_count, is_video, load_input
from seglib.predict.outputs import Background, draw_outputs, save_jpeg_atomic
from seglib.predict.pipeline import WriteBehind, decoded_ahead
from seglib.predict.quality import (
    AUTO_ESTIMATOR,
    MASK,
    PHOTO,
    QUALITY_TABLE,
    describe_table,
    estimator_for,
    model_file_of,
    probed,
    probed_proba,
    refuse_foreign_table,
    scored_table,
    write_quality_table,
)
from seglib.predict.quality_features import mask_features
from seglib.predict.video import output_suffix

if TYPE_CHECKING:
    from seglib.predict.predictor import Predictor

logger = logging.getLogger(__name__)

MASK_SUFFIX = ".mask.png"
OVERLAY_SUFFIX = ".overlay.jpg"
CUTOUT_SUFFIX = ".cutout.png"
BACKGROUND_SUFFIX = ".background.jpg"
PHOTO_SUFFIXES = {"mask": MASK_SUFFIX, "overlay": OVERLAY_SUFFIX, "cutout": CUTOUT_SUFFIX,
                  "background": BACKGROUND_SUFFIX}
PLURAL = {"mask": "masks", "overlay": "overlays", "cutout": "cut-outs", "background": "composites"}


@dataclass(frozen=True)
class OutputChoice:
    """Which outputs each input gets besides its mask, and how they are drawn."""

    overlay: bool = False
    cutout: bool = False
    background: Background | None = None
    refine: bool = False  # fit the soft edge of cut-outs and composites to the photo (guided filter)
    smooth: bool = True  # videos: average the probabilities over still frames
    quality: bool = True  # photos: quality.csv beside the masks, the predicted IoU of each (seglib.predict.quality)

    def kinds(self) -> list[str]:
        return ["mask"] + [k for k, on in (("overlay", self.overlay), ("cutout", self.cutout),
                                           ("background", self.background is not None)) if on]


@dataclass
class Planned:
    """One input and the file each of its outputs goes to (kind -> path)."""

    input: Path
    outputs: dict[str, Path]
    renamed: bool = False  # another input has the same stem: its outputs are named <stem>-N

    @property
    def mask(self) -> Path:
        return self.outputs["mask"]


def plan_outputs(inputs: list[Path], out_dir: str | Path, choice: OutputChoice | None = None) -> list[Planned]:
    """The outputs of each input. The first input of a stem keeps it; the others sharing it (photo.jpg in two
    folders, or photo.jpg and photo.mp4) get `photo-2`, `photo-3`, ... in input order, skipping every name that
    is another input's own stem (a/x.jpg, b/x.jpg, c/x-2.jpg: x, x-3, x-2), so no two inputs ever share an
    output (case-insensitively, for case-insensitive file systems)."""
    choice = choice or OutputChoice()
    out_dir = Path(out_dir)
    stems = [path.stem or "image" for path in inputs]
    natural = {stem.lower() for stem in stems}
    used: set[str] = set()
    plan = []
    for path, stem in zip(inputs, stems, strict=True):
        name, n = stem, 1
        while name.lower() in used or (n > 1 and name.lower() in natural):
            n += 1
            name = f"{stem}-{n}"
        used.add(name.lower())
        suffixes = ({k: f".{k}{output_suffix(path)}" for k in PHOTO_SUFFIXES} if is_video(path) else PHOTO_SUFFIXES)
        plan.append(Planned(path, {kind: out_dir / f"{name}{suffixes[kind]}" for kind in choice.kinds()}, n > 1))
    return plan


def refuse_unsafe_out(inputs: list[Path], out_dir: str | Path) -> None:
    """SeglibError, one line, when `out_dir` is (inside) a folder seglib reads data from (a registered set's photo
    or mask folder, data/derived, the splits, data/raw: `seglib.data.fence`) or is the folder of a photo being
    predicted, whose own files (a hand-made <stem>.mask.png) --overwrite would replace. A new folder beside the
    photos is fine."""
    from seglib.data.fence import refuse_data_folders

    refuse_data_folders(out_dir, option="--out")
    out = Path(out_dir).resolve()
    for path in inputs:
        if path.parent.resolve() == out:
            raise SeglibError(f"{out_dir}: is the folder of the photos predict reads ({path}); refusing to write "
                              "there, even with --overwrite; choose another --out")


def existing_outputs(plan: list[Planned]) -> list[Path]:
    """The planned outputs that are already there."""
    return [p for item in plan for p in item.outputs.values() if p.exists()]


def refuse_existing(plan: list[Planned]) -> None:
    """SeglibError naming the first planned output that already exists (outputs are never silently replaced)."""
    existing = existing_outputs(plan)
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SeglibError(f"{existing[0]} already exists{more}; refusing to overwrite (pass --overwrite "
                          "to replace, or choose another --out)")


@dataclass
class PredictReport:
    """What `predict_files` did: outputs written, inputs that failed (with the reason), EXIF-rotated inputs."""

    out_dir: Path
    written: list[Path] = field(default_factory=list)  # mask files (photos) and mask videos, in input order
    extra: dict[str, list[Path]] = field(default_factory=dict)  # overlay/cutout/background -> files
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, one-line problem)
    exif_rotated: list[Path] = field(default_factory=list)  # inputs whose EXIF orientation was applied
    outputs: dict[Path, Path] = field(default_factory=dict)  # input -> mask file
    videos: list = field(default_factory=list)  # seglib.predict.video.VideoResult per video
    planned: int = 0  # inputs the batch was given
    renamed: dict[Path, Path] = field(default_factory=dict)  # input -> mask, for inputs sharing a stem
    earlier: set[Path] = field(default_factory=set)  # outputs there before an --overwrite batch began
    quality_rows: dict[Path, dict] = field(default_factory=dict)  # photo -> its row of quality.csv (no predicted IoU)
    quality: Path | None = None  # quality.csv, once written
    quality_line: str = ""  # what the table says, in one line

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def overlays(self) -> list[Path]:
        return self.extra.get("overlay", [])

    def summary(self) -> str:
        counts = [(len(self.written), "mask")] + [(len(v), k) for k, v in self.extra.items() if v]
        parts = [f"{n} {PLURAL[k] if n != 1 else k.replace('cutout', 'cut-out').replace('background', 'composite')}"
                 for n, k in counts]
        what = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}"
        videos = f" ({len(self.videos)} video{'s' if len(self.videos) != 1 else ''})" if self.videos else ""
        lines = [f"wrote {what}{videos} to {self.out_dir}; {len(self.failed)} failed"]
        if self.quality is not None:
            lines.append(f"wrote {self.quality.name}: {self.quality_line}")
        renamed = [(source, mask) for source, mask in self.renamed.items() if source in self.outputs]
        if renamed:
            lines.append("renamed, as another input has the same name:")
            lines += [f"  {source} -> {mask.name}" for source, mask in renamed]
        return "\n".join(lines)

    def interrupted_summary(self, signal_name: str = "SIGINT") -> str:
        """What an interrupted batch left: how many masks, where, that each file is complete, and how many of the
        files an --overwrite batch was replacing are still the earlier ones."""
        done = len(self.written)
        replaced = set(self.written).union(*self.extra.values())
        kept = len(self.earlier - replaced)
        earlier = f"; {kept} files in {self.out_dir} still hold the earlier run's outputs" if kept else ""
        if not done:
            return (f"predict stopped by {signal_name} before writing any of {self.planned} masks; nothing "
                    f"written{earlier}")
        left = self.planned - done - len(self.failed)
        return (f"predict stopped by {signal_name} after writing {done} of {self.planned} masks to {self.out_dir}; "
                f"each file written is complete, {left} not written{earlier}; run again with --overwrite to redo "
                "them all, or with another --out")

    def full_disk(self, path: Path, exc: OSError) -> SeglibError:
        """The one line that stops a batch whose write of `path` found no space left."""
        return SeglibError(f"{path}: cannot write ({exc.strerror or exc}); predict stopped after writing "
                           f"{len(self.written)} of {self.planned} masks to {self.out_dir}, each file complete; "
                           "free some space and run again with --overwrite, or with another --out")

    def add(self, kind: str, path: Path, source: Path) -> None:
        if kind == "mask":
            self.written.append(path)  # at once: an interrupt while an extra is written still counts this mask
            self.outputs[source] = path
        else:
            self.extra.setdefault(kind, []).append(path)


def predict_files(predictor: Predictor, inputs, out_dir: str | Path, choice: OutputChoice | None = None, *,
                  progress: bool = True, overwrite: bool = False, threshold: float | None = None,
                  estimator=AUTO_ESTIMATOR) -> PredictReport:
    """Predict every input (photos and videos, see `collect_inputs`) and write its outputs into `out_dir`
    (the module says which). A folder seglib reads data from, or a photo's own folder, is refused
    (`refuse_unsafe_out`), and so is a folder another batch is writing into (`seglib.infra.locks`). Existing outputs are
    refused up front (SeglibError, nothing written) unless `overwrite`. An input that cannot be decoded (missing,
    empty, corrupt, truncated, not an image or video, too large) is recorded in the report (and logged as a
    warning, `skipped <path>: <problem>`) and the batch goes on; a write refused for lack of space stops it
    (SeglibError naming the file). Files are written atomically (never half-written). An
    interrupt (KeyboardInterrupt, which SIGTERM/SIGHUP raise too) propagates with the report so far attached as
    `exc.predict_report` (`PredictReport.interrupted_summary` says what was left).
    With `choice.quality` (the default), `quality.csv` in `out_dir` gets a row per photo written: its predicted IoU
    and check flag by `estimator` (a `QualityEstimator`; None: left empty; by default the one beside the
    predictor's checkpoint, `seglib.predict.quality.estimator_for`), merged with the rows an earlier batch there
    wrote for other masks; written when the batch ends (an interrupted batch leaves it as it was).
    """
    choice = choice or OutputChoice()
    # 1. the inputs, and a folder the batch may write into (created by the first output written)
    paths = collect_inputs(inputs)
    out_dir = check_writable_dir(out_dir)
    refuse_unsafe_out(paths, out_dir)
    with reentrant(output_folder(out_dir), str(out_dir)):  # one batch per folder (`seglib predict` holds it already)
        # 2. the outputs: existing ones refused, or with `overwrite` remembered (a stop says which remain)
        plan = plan_outputs(paths, out_dir, choice)
        if not overwrite:
            refuse_existing(plan)
        if choice.quality:
            refuse_foreign_table(out_dir, overwrite)
            if estimator == AUTO_ESTIMATOR:
                estimator = estimator_for(predictor, model_file_of(predictor))
        report = PredictReport(out_dir=out_dir, planned=len(plan),
                               renamed={item.input: item.mask for item in plan if item.renamed},
                               earlier=set(existing_outputs(plan)) if overwrite else set())
        # 3. each input through the model, its outputs written behind it; then the quality table
        _run(predictor, plan, report, choice, threshold, progress)
        _write_quality(report, plan, estimator, predictor.tta)
    return report


def _write_quality(report: PredictReport, plan: list[Planned], estimator, tta: bool) -> None:
    """quality.csv for the photos whose masks were written, in input order (nothing when there is none)."""
    rows = [report.quality_rows[item.input] for item in plan
            if item.input in report.quality_rows and item.input in report.outputs]
    if not rows:
        return
    table = scored_table(rows, estimator, tta)
    try:
        report.quality = write_quality_table(report.out_dir, table)
    except OSError as exc:
        raise SeglibError(f"{report.out_dir / QUALITY_TABLE}: cannot write ({exc.strerror or exc}); the masks are "
                          "written") from None
    report.quality_line = describe_table(table, estimator, tta)


def _run(predictor: Predictor, plan: list[Planned], report: PredictReport, choice: OutputChoice,
         threshold: float | None, progress: bool) -> None:
    """Decode ahead, predict and write behind every planned input, recording the outcome in `report`."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(plan), desc="predict", unit="img", disable=not progress or len(plan) < 2, file=sys.stderr)

    photo_predictor, workers = side_by_side(predictor, sum(not is_video(item.input) for item in plan))
    t = predictor.threshold if threshold is None else threshold
    if choice.quality:  # the flip IoU comes out of the TTA call itself
        photo_predictor = probed(photo_predictor, photo_predictor.tta, t)
    writer = WriteBehind()
    decoded = decoded_ahead(plan, _decode)
    predicted = decoded_ahead(decoded, lambda pair: _probabilities(photo_predictor, pair[1]), workers=workers,
                              name="predict")
    try:
        for (item, photo), prob in predicted:
            if is_video(item.input):
                writer.harvest(wait=True)  # the photos before it are on disk before the video starts
                _predict_video(predictor, report, item, choice, threshold, progress)
            else:
                _write_behind(predictor, report, item, photo, prob, choice, threshold, writer)
            bar.update(1)
        writer.harvest(wait=True)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (seglib.infra.signals): the files written so far are
        writer.close()  # whole (atomic writes), those handed to the writer finished; the caller says how many
        exc.predict_report = report
        raise
    finally:
        predicted.close()  # the network's threads, then the decoder's, stop before the writer's
        decoded.close()
        writer.close()
        bar.close()


def _decode(item: Planned):
    """A photo decoded as viewers show it: (rgb, EXIF orientation, frames), or the DataError saying why not;
    None for a video (decoded frame by frame as it is predicted)."""
    if is_video(item.input):
        return None
    try:
        rgb, orientation = load_input(item.input)
    except DataError as exc:
        return exc
    return rgb, orientation, frame_count(item.input)


def side_by_side(predictor: Predictor, photos: int) -> tuple[Predictor, int]:
    """(predictor, threads) for the network stage of a batch of `photos`: where the network can run in one
    thread (ONNX Runtime) and there are at least two photos and two cores, a copy of the predictor on a
    single-threaded session, called from one thread per core; otherwise the predictor, one photo at a time.
    Photos side by side keep both cores busy through the network's small layers, and a core that another
    process takes slows one photo rather than every layer of each (reports/bench/folder.md)."""
    single = getattr(predictor.network, "single_threaded", None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if single is None or photos < 2 or cores < 2:
        return predictor, 1
    twin = copy.copy(predictor)
    twin.network = single()
    return twin, min(cores, photos)


def _probabilities(predictor: Predictor, decoded) -> tuple[np.ndarray, float | None] | None:
    """(foreground probabilities, flip IoU or None) of a decoded photo (see `_decode`); None for a video or a
    failed decode."""
    return probed_proba(predictor, decoded[0]) if isinstance(decoded, tuple) else None


def _write_behind(predictor: Predictor, report: PredictReport, item: Planned, decoded, prob,
                  choice: OutputChoice, threshold: float | None, writer: WriteBehind) -> None:
    """Hand one predicted photo's outputs to the writer, which records them in `report`."""
    path = item.input
    if isinstance(decoded, DataError):
        _skip(report, path, _problem(decoded, path))
        return
    rgb, orientation, frames = decoded
    t = predictor.threshold if threshold is None else threshold
    if frames > 1:
        logger.info(f"{path}: {frames} frames (animated or multi-page); the outputs are for the first frame")
    writer.submit(lambda: _write_photo(report, item, rgb, prob, t, choice, orientation))


def _write_photo(report: PredictReport, item: Planned, rgb: np.ndarray, predicted: tuple, t: float,
                 choice: OutputChoice, orientation: int) -> None:
    """Write one photo's outputs (on the writer's thread), recording each in `report` once it is on disk, and
    (with `choice.quality`) its row of the quality table."""
    path = item.input
    prob, flip_iou = predicted
    if choice.quality:
        report.quality_rows[path] = {PHOTO: str(path), MASK: item.mask.name, **mask_features(prob, t, flip_iou)}
    pictures = draw_outputs(item.outputs, rgb, prob, t, background=choice.background, refine=choice.refine)
    for kind, out in item.outputs.items():
        try:
            save = save_png_atomic if out.suffix.lower() == ".png" else save_jpeg_atomic
            save(out, pictures[kind])
        except OSError as exc:
            if exc.errno in FULL_DISK_ERRNOS:  # the next photos would not fit either: stop here, with one line
                raise report.full_disk(out, exc) from None
            _skip(report, path, f"could not write output ({exc.strerror or exc})")
            return
        report.add(kind, out, path)
    if orientation != 1:
        report.exif_rotated.append(path)
        h, w = rgb.shape[:2]
        stored = f"{h}x{w}" if orientation >= 5 else f"{w}x{h}"
        logger.info(f"{path}: EXIF orientation {orientation} applied; mask matches the photo as viewers show it "
                    f"({w}x{h}; stored {stored})")


def _predict_video(predictor: Predictor, report: PredictReport, item: Planned, choice: OutputChoice,
                   threshold: float | None, progress: bool) -> None:
    """Predict one video and write its output videos, recording the outcome in `report`."""
    from seglib.predict.video import predict_video

    try:
        result = predict_video(predictor, item.input, item.outputs, background=choice.background,
                               refine=choice.refine, smooth=choice.smooth, threshold=threshold, progress=progress)
    except DataError as exc:
        _skip(report, item.input, _problem(exc, item.input))
        return
    except OSError as exc:
        if exc.errno in FULL_DISK_ERRNOS:
            raise report.full_disk(Path(exc.filename or item.mask), exc) from None
        _skip(report, item.input, f"could not write output ({exc.strerror or exc})")
        return
    report.videos.append(result)
    for kind, out in item.outputs.items():
        report.add(kind, out, item.input)
    logger.info(result.describe())


def _skip(report: PredictReport, path: Path, problem: str) -> None:
    report.failed.append((path, problem))
    logger.warning(f"skipped {path}: {problem}")


def _problem(exc: Exception, path: Path) -> str:
    """The error message without its leading '<path>: ' (the skip line names the path already)."""
    msg = str(exc)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg
