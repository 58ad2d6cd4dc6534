"""Video in, video out: every frame through the model, masks smoothed over time, written as a new video.

Frames are decoded and encoded by PyAV, whose wheels carry FFmpeg with its codecs (H.264 through x264, VP9, AAC,
Opus), so nothing has to be installed beside it; OpenCV's VideoWriter depends on how OpenCV was built and keeps
no audio. An output keeps the input's container (AVI becomes MP4), H.264 in MP4/MOV/MKV and VP9 in WebM, the
input's frame times, and its audio stream copied as it is where the container takes that codec.

A video whose display matrix turns it (a phone's portrait video is stored landscape, tagged to be turned a
quarter) is turned upright before the model sees it, as players and FFmpeg's own tools show it, and written
upright with no display matrix: the model was trained on upright people.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seglib.infra.errors import DataError
from seglib.infra.io import atomic_path
from seglib.predict.outputs import Background, draw_outputs
from seglib.predict.smoothing import TemporalSmoother

CONTAINER_FOR = {".avi": ".mp4"}  # an output keeps its input's container, except these
FORMAT_OF = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
# audio codecs each container takes as they are (None: any)
AUDIO_CODECS: dict[str, set[str] | None] = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}, ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le", "pcm_f32le"}, ".webm": {"opus", "vorbis"},
    ".mkv": None}
X264_OPTIONS = {"crf": "18", "preset": "veryfast"}
VP9_OPTIONS = {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}


def output_suffix(video: Path) -> str:
    """The container an output of this input video is written in (its own; AVI becomes MP4)."""
    suffix = Path(video).suffix.lower()
    return CONTAINER_FOR.get(suffix, suffix if suffix in FORMAT_OF else ".mp4")


@dataclass
class VideoResult:
    """What one video gave: its outputs (kind -> file), frames, size, rate, what became of its audio."""

    input: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    audio: str = ""
    cuts: int = 0
    seconds: float = 0.0
    turns: int = 0  # counter-clockwise quarter turns its display matrix asked for, applied to every frame

    def describe(self) -> str:
        rate = f"{self.frames / self.seconds:.1f} frames/s" if self.seconds > 0 else ""
        turned = f", turned upright ({90 * self.turns} degrees counter-clockwise)" if self.turns else ""
        return (f"{self.input}: {self.frames} frames, {self.width}x{self.height} at {self.fps:.3g} fps{turned}, "
                f"{self.audio}; {rate}")


def open_video(path: Path):
    """(container, video stream, audio stream or None); DataError naming the file when it cannot be read."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise DataError(f"{path}: not a video FFmpeg can read ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream (audio only, or not a video)")
    video = container.streams.video[0]
    if video.codec_context is None:
        container.close()
        raise DataError(f"{path}: its video codec cannot be decoded by this build of FFmpeg (PyAV)")
    audio = container.streams.audio[0] if container.streams.audio else None
    return container, video, audio


def quarter_turns(rotation) -> int:
    """Counter-clockwise quarter turns (0-3) that show a frame upright, from its display matrix's rotation in
    degrees (PyAV's `VideoFrame.rotation`, counter-clockwise; 0 without one), rounded to a quarter."""
    return round((rotation or 0) / 90) % 4


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    """The frame turned `turns` quarters counter-clockwise, as it is meant to be shown."""
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def first_frame_turns(path: Path) -> int:
    """The quarter turns of the video's first frame (0 when none decodes: the decoding loop says why)."""
    import av

    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return quarter_turns(frame.rotation)
    except av.FFmpegError:
        pass
    return 0


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", "") or exc).strip() or type(exc).__name__


class VideoWriter:
    """One output video, written to a temporary file beside its path and renamed into place when complete."""

    def __init__(self, path: Path, like, audio_like, size: tuple[int, int] | None = None):
        self.path = path
        self._stack = contextlib.ExitStack()
        self.audio = None
        self.audio_note = "no audio in the input"
        self._open(like, audio_like, size or (like.codec_context.width, like.codec_context.height))

    def _open(self, like, audio_like, size: tuple[int, int]) -> None:
        import av

        suffix = self.path.suffix.lower()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self.container = av.open(str(tmp), mode="w", format=FORMAT_OF[suffix])
        self._stack.callback(self.container.close)
        width, height = size
        codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
        self.video = self.container.add_stream(codec, rate=like.average_rate or like.guessed_rate or 25)
        self.video.width, self.video.height = width, height
        odd = width % 2 or height % 2  # x264's 4:2:0 needs even sides; 4:4:4 keeps every pixel of an odd size
        self.video.pix_fmt = "yuv444p" if codec == "libx264" and odd else "yuv420p"
        self.video.time_base = like.time_base
        self.video.options = dict(VP9_OPTIONS if codec == "libvpx-vp9" else X264_OPTIONS)
        if audio_like is not None:
            allowed = AUDIO_CODECS.get(suffix)
            name = audio_like.codec_context.name
            if allowed is None or name in allowed:
                self.audio = self.container.add_stream_from_template(audio_like)
                self.audio_note = f"audio kept ({name})"
            else:
                self.audio_note = f"audio not kept ({name} cannot go in {suffix} as it is)"

    def write(self, rgb: np.ndarray, pts, time_base) -> None:
        import av

        if rgb.ndim == 2:  # a mask: grey in all three channels
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def copy_audio(self, packet) -> None:
        """Mux a copy of an input audio packet (each output gets its own: muxing takes the packet's data)."""
        import av

        if self.audio is None:
            return
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
        copy.stream = self.audio
        self.container.mux(copy)

    def finish(self) -> None:
        """Flush the encoder; the file is renamed into place when the writer's context closes without error."""
        for packet in self.video.encode():
            self.container.mux(packet)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)


def predict_video(predictor, path: Path, outputs: dict[str, Path], *, background: Background | None = None,
                  refine: bool = False, smooth: bool = True, threshold: float | None = None,
                  progress: bool = True) -> VideoResult:
    """Write each requested output video (`outputs`: kind -> path; kinds mask, overlay, cutout (the figure on
    chroma-key green), background) for the video at `path`, masks smoothed over time unless `smooth` is off.
    A video that cannot be read is a DataError naming it; an output is whole or absent (atomic rename)."""
    import av
    from tqdm.auto import tqdm

    start = time.perf_counter()
    container, vstream, astream = open_video(path)
    turns = first_frame_turns(path)
    size = (vstream.codec_context.width, vstream.codec_context.height)[::-1 if turns % 2 else 1]
    result = VideoResult(input=path, outputs=dict(outputs), width=size[0], height=size[1],
                         fps=float(vstream.average_rate or vstream.guessed_rate or 0), turns=turns)
    smoother = TemporalSmoother() if smooth else None
    t = predictor.threshold if threshold is None else threshold
    bar = tqdm(total=vstream.frames or None, desc=path.name, unit="frame", disable=not progress)
    try:
        with container, contextlib.ExitStack() as stack:
            writers = {kind: stack.enter_context(VideoWriter(out, vstream, astream, size))
                       for kind, out in outputs.items()}
            streams = [vstream] + ([astream] if astream is not None else [])
            try:
                for packet in container.demux(*streams):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            for writer in writers.values():
                                writer.copy_audio(packet)
                        continue
                    for frame in packet.decode():
                        rgb = upright(frame.to_ndarray(format="rgb24"), turns)
                        if rgb.shape[1::-1] != size:
                            raise DataError(f"{path}: frame {result.frames + 1} is {rgb.shape[1]}x{rgb.shape[0]} "
                                            f"upright, the first was {size[0]}x{size[1]}; a video whose frame "
                                            "size or rotation changes midway is not supported")
                        prob = predictor.predict_proba(rgb)
                        if smoother is not None:
                            prob = smoother(prob, rgb)
                        pts = frame.pts if frame.pts is not None else result.frames
                        pictures = draw_outputs(writers, rgb, prob, t, background=background, refine=refine,
                                                transparent=False)
                        for kind, writer in writers.items():
                            writer.write(pictures[kind], pts, frame.time_base or vstream.time_base)
                        result.frames += 1
                        bar.update(1)
            except av.FFmpegError as exc:
                raise DataError(f"{path}: cannot decode frame {result.frames + 1} ({_reason(exc)}); "
                                "truncated or corrupt") from None
            if result.frames == 0:
                raise DataError(f"{path}: no frame could be decoded")
            for writer in writers.values():
                writer.finish()
            result.audio = next(iter(writers.values())).audio_note if writers else ""
    finally:
        bar.close()
    result.cuts = smoother.cuts if smoother is not None else 0
    result.seconds = time.perf_counter() - start
    return result
