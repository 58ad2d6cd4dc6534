"""Pre-labels for a folder of photos (`seglib label export`): each photo's mask predicted by a model and written
as one COCO file, or as Label Studio tasks beside the labelling configuration of their project
(`seglib.label.formats`), the photos in the order to label them.

The order is `labelling_order`'s: the ranking of `seglib.label.suggest.rank_photos` (the most to gain first,
near-duplicates held back). A photo that cannot be read is skipped and reported, the others exported; a video is
left out. The output folder must hold no file yet (with `overwrite`, the export's own files are replaced and any
other kept); it is never a folder seglib reads data from nor the photo folder itself, one export writes into it at
a time (`seglib.infra.locks`), and each file is written whole or not at all.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from seglib.data.descriptions import COCO, LABELSTUDIO
from seglib.data.labelstudio import stored_orientation
from seglib.infra.errors import ConfigError, DataError, SeglibError
from seglib.infra.io import check_writable_dir, write_text_atomic
from seglib.infra.locks import lock_path, output_folder, reentrant
from seglib.label.formats import (
    ENCODINGS,
    LABELLING_CONFIG,
    RLE,
    coco_annotation,
    coco_document,
    coco_image,
    labelstudio_task,
    local_files_prefix,
    photo_url,
)

logger = logging.getLogger(__name__)

TARGETS = (COCO, LABELSTUDIO)  # the tools' formats an export writes
COCO_FILE, TASKS_FILE, CONFIG_FILE = "coco.json", "tasks.json", "labeling_config.xml"
OUTPUTS = {COCO: (COCO_FILE,), LABELSTUDIO: (CONFIG_FILE, TASKS_FILE)}


@dataclass(frozen=True)
class ExportOptions:
    """What an export writes: `to` COCO or LABELSTUDIO; a COCO file's `encoding` (RLE or POLYGONS); the URL
    prefix before each photo's name in Label Studio tasks (`image_url`; default: its local-files route for a
    document root that holds the folder); `overwrite` the export's own files."""

    to: str = COCO
    encoding: str = RLE
    image_url: str | None = None
    overwrite: bool = False
    progress: bool = False

    def check(self) -> None:
        if self.to not in TARGETS:
            raise ConfigError(f"--to {self.to!r}: expected one of {', '.join(TARGETS)}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"--encoding {self.encoding!r}: expected one of {', '.join(ENCODINGS)}")


@dataclass
class ExportReport:
    """What an export wrote: its files, the photos exported (in labelling order), those that failed and why, and
    the videos left out."""

    out_dir: Path
    to: str
    files: list[Path] = field(default_factory=list)
    exported: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    left_out: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        n = len(self.exported)
        lines = [f"exported {n} photo{'s' if n != 1 else ''} as {self.to} pre-labels, the most to gain from a "
                 f"label first: {', '.join(str(p) for p in self.files)}; {len(self.failed)} failed"]
        if self.left_out:
            lines.append(f"left out {len(self.left_out)} video{'s' if len(self.left_out) != 1 else ''} (photos only)")
        return "\n".join(lines)


def export_prelabels(predictor, folder: str | Path, out_dir: str | Path,
                     options: ExportOptions | None = None) -> ExportReport:
    """Predict every photo of `folder` with `predictor` and write its pre-labels into `out_dir` as `options` say
    (see the module): an unreadable photo is skipped and listed in the report; none readable, a folder that
    already holds files (unless `overwrite`) or one seglib may not write into is a SeglibError, nothing written."""
    # 1. the photos, and a folder the export may write into (checked before any work)
    options = options or ExportOptions()
    options.check()
    folder = Path(folder)
    photos, videos = photos_of(folder)
    if not photos:
        raise SeglibError(f"{folder}: holds no photo to pre-label ({len(videos)} video(s): photos only)")
    out_dir = check_export_folder(out_dir, folder)
    report = ExportReport(out_dir, options.to, left_out=videos)
    with reentrant(output_folder(out_dir), str(out_dir)):  # one export per folder, from this check to the last file
        if not options.overwrite:
            refuse_files(out_dir)
        # 2. the order to label them in (the photos that cannot be read are found here)
        order, scores, report.failed = labelling_order(predictor, photos)
        # 3. each photo's mask in the tool's format
        entries = _predicted(predictor, order, scores, folder, options, report)
        if not entries:
            raise SeglibError(f"{folder}: none of its {len(photos)} photos could be read ({report.failed[0][0]}: "
                              f"{report.failed[0][1]}); nothing written")
        # 4. the files, each written whole
        report.files = _write(entries, out_dir, options, predictor)
    return report


def photos_of(folder: Path) -> tuple[list[Path], list[Path]]:
    """(photos, videos) of a folder, by name (`seglib.predict.inputs.collect_inputs`)."""
    from seglib.predict.inputs import collect_inputs, is_video

    if not folder.is_dir():
        raise SeglibError(f"{folder}: {'is not a folder' if folder.exists() else 'folder not found'}; give the "
                          "folder of photos to pre-label")
    found = collect_inputs([folder], warn=logger.info)
    return [p for p in found if not is_video(p)], [p for p in found if is_video(p)]


def check_export_folder(out_dir: str | Path, folder: Path) -> Path:
    """`out_dir`, checked writable, not a folder seglib reads data from, not the photo folder."""
    from seglib.data.fence import refuse_data_folders

    out_dir = check_writable_dir(out_dir)
    refuse_data_folders(out_dir, option="--out")
    if out_dir.resolve() == folder.resolve():
        raise SeglibError(f"{out_dir}: is the photo folder being exported; choose another --out")
    return out_dir


def refuse_files(out_dir: Path) -> None:
    """A SeglibError naming what `out_dir` already holds (its lock aside)."""
    lock = lock_path(output_folder(out_dir)).name
    held = sorted(p.name for p in out_dir.iterdir() if p.name != lock) if out_dir.is_dir() else []
    if held:
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        raise SeglibError(f"{out_dir}: already holds {held[0]}{more}; refusing to write there (pass --overwrite to "
                          "replace the export's files, or choose another --out)")


def labelling_order(predictor, photos: list[Path]) -> tuple[list[Path], dict[Path, float], list[tuple[Path, str]]]:
    """(the readable photos in the order to label them, each one's score, the photos that cannot be read and why).

    The order is `seglib.label.suggest.rank_photos`'s; a photo's score is 1 - the gain it was ranked with (the
    model's confidence, rising along the order)."""
    from seglib.label.suggest import rank_photos

    by_name = {str(p): p for p in photos}
    ranked = rank_photos(predictor, photos)
    order = [by_name[p] for p in ranked["photo"].astype(str)]
    scores = {by_name[p]: 1.0 - float(g) for p, g in zip(ranked["photo"].astype(str), ranked["gain"], strict=True)}
    skipped = [(Path(p), _problem(str(why), str(p))) for p, why in ranked.attrs.get("skipped", [])]
    return order, scores, skipped


def _predicted(predictor, order: list[Path], scores: dict[Path, float], folder: Path, options: ExportOptions,
               report: ExportReport) -> list:
    """Each readable photo's COCO (image, annotation) or Label Studio task, in `order`."""
    from tqdm.auto import tqdm

    from seglib.predict.inputs import load_input

    prefix = options.image_url if options.image_url is not None else local_files_prefix(folder.resolve().name)
    version = f"seglib {predictor.source or 'model'}"
    entries = []
    for photo in tqdm(order, desc="pre-label", unit="img", disable=not options.progress or len(order) < 2,
                      file=sys.stderr):
        try:
            rgb, orientation = load_input(photo)
        except DataError as exc:
            report.failed.append((photo, _problem(str(exc), str(photo))))
            logger.warning(f"skipped {photo}: {report.failed[-1][1]}")
            continue
        mask = predictor.predict_mask(rgb)  # over the photo as viewers show it
        relative = photo.relative_to(folder).as_posix()
        if options.to == COCO:
            stored = stored_orientation(mask, orientation)
            image_id = len(entries) + 1
            entries.append((coco_image(image_id, relative, *stored.shape),
                            coco_annotation(stored, image_id, options.encoding)))
        else:
            entries.append(labelstudio_task(relative, photo_url(prefix, relative), mask, model_version=version,
                                            score=scores.get(photo)))
        report.exported.append(photo)
    return entries


def _write(entries: list, out_dir: Path, options: ExportOptions, predictor) -> list[Path]:
    """The export's files, each atomically: the COCO file, or the labelling configuration then the tasks."""
    files = [out_dir / name for name in OUTPUTS[options.to]]
    if options.to == COCO:
        document = coco_document([image for image, _ in entries], [a for _, a in entries if a is not None],
                                 f"person masks predicted by seglib ({predictor.source or 'model'})")
        _write_json(files[0], document)
    else:
        write_text_atomic(files[0], LABELLING_CONFIG)
        _write_json(files[1], entries)
    return files


def _write_json(path: Path, document) -> None:
    """Compact JSON (a brush mask is a long list of numbers), written whole or not at all."""
    write_text_atomic(path, json.dumps(document, separators=(",", ":")) + "\n")


def _problem(message: str, path: str) -> str:
    """A message without its leading '<path>: ' (the line that reports it names the path already)."""
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message
