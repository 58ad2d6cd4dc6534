"""Video in, video out: the same frames, size and audio; temporal smoothing that flickers measurably less on a
still scene; every bad video (no video stream, truncated, an undecodable codec, --out the input) one line naming
the file, the batch going on, and nothing half-written when it stops."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save_tiny_checkpoint
from PIL import Image

from seglib.predict.smoothing import TemporalSmoother, consecutive_iou

av = pytest.importorskip("av")

REFERENCE = "reports/reference/best.pt"


def make_video(path, frames: np.ndarray, *, fps: int = 10, audio: str | None = "aac", codec: str = "libx264",
               pix_fmt: str = "yuv420p", rotation: int = 0) -> None:
    """Encode frames (N,H,W,3 uint8) with PyAV, and about as much silence as the video lasts; `rotation`
    (counter-clockwise degrees) goes in the container's display matrix, as a phone tags a portrait video."""
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=fps)
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt = pix_fmt
    if rotation:
        video.set_display_rotation(rotation)
    sound = out.add_stream(audio, rate=16000) if audio else None
    for frame in frames:
        for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
    if sound is not None:
        layout = "stereo"
        for i in range(len(frames) * 16000 // fps // 960):
            chunk = av.AudioFrame.from_ndarray(np.zeros((2, 960), np.float32), format="fltp", layout=layout)
            chunk.sample_rate, chunk.pts = 16000, i * 960
            for packet in sound.encode(chunk):
                out.mux(packet)
    for stream in [video] + ([sound] if sound is not None else []):
        for packet in stream.encode():
            out.mux(packet)
    out.close()


def read_video(path):
    """(frames as N,H,W,3 uint8, names of the codecs of its streams)."""
    with av.open(str(path)) as container:
        codecs = [s.codec_context.name for s in container.streams]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, codecs


def still_scene(photo: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """n frames of one photo with fresh sensor noise each: nothing moves, so any change of mask is flicker."""
    rng = np.random.default_rng(seed)
    h, w = (photo.shape[0] // 2) * 2, (photo.shape[1] // 2) * 2
    base = photo[:h, :w].astype(np.float32)
    return np.stack([np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8) for _ in range(n)])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=64)


def predict(*argv) -> int:
    from seglib.cli import main

    return main(["predict", *map(str, argv), "--no-progress"])


@pytest.mark.parametrize(("suffix", "codec", "audio", "sound_out"),
                         [(".mp4", "libx264", "aac", "aac"), (".webm", "libvpx-vp9", "libopus", "opus"),
                          (".mkv", "libx264", None, None)])
def test_a_video_gives_videos_of_the_same_frames_and_size_with_its_audio(tmp_path, checkpoint, capsys, suffix,
                                                                         codec, audio, sound_out):
    frames = still_scene(np.full((36, 52, 3), 90, np.uint8), 7, 10)
    clip = tmp_path / f"clip{suffix}"
    make_video(clip, frames, audio=audio, codec=codec)
    out = tmp_path / "out"
    assert predict(clip, "--checkpoint", checkpoint, "--out", out, "--overlay", "--cutout", "--background",
                   "white") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"clip.{kind}{suffix}" for kind in ("mask", "overlay", "cutout", "background"))
    for name in names:
        got, codecs = read_video(out / name)
        assert got.shape == frames.shape, name
        assert (sound_out in codecs) if sound_out else len(codecs) == 1, codecs
    said = capsys.readouterr().out
    assert f"{clip}: 7 frames, 52x36 at 10 fps, {'audio kept (' + sound_out + ')' if sound_out else 'no audio'}" \
        in said
    assert "wrote 1 mask, 1 overlay, 1 cut-out and 1 composite (1 video)" in said


def test_an_odd_sized_avi_comes_out_as_an_mp4_of_the_same_size(tmp_path, checkpoint):
    frames = np.random.default_rng(0).integers(0, 255, (4, 25, 33, 3), dtype=np.uint8)
    clip = tmp_path / "odd.avi"
    make_video(clip, np.ascontiguousarray(frames), audio=None, codec="libx264", pix_fmt="yuv444p")
    assert predict(clip, "--checkpoint", checkpoint, "--out", tmp_path / "out") == 0
    got, _ = read_video(tmp_path / "out" / "odd.mask.mp4")
    assert got.shape == (4, 25, 33, 3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_rotated_video_is_turned_upright_before_the_model_sees_it(tmp_path, checkpoint, monkeypatch, rotation):
    from seglib.predict import video as video_module

    stored = np.full((5, 32, 48, 3), 40, np.uint8)
    stored[:, :8, :8] = 250  # a bright corner, top left as stored
    clip = tmp_path / "phone.mp4"
    make_video(clip, stored, audio=None, rotation=rotation)
    with av.open(str(clip)) as container:  # PyAV reads back the rotation it wrote
        assert next(container.decode(video=0)).rotation % 360 == rotation % 360
    seen = []
    real = video_module.draw_outputs
    monkeypatch.setattr(video_module, "draw_outputs", lambda writers, rgb, *a, **k: seen.append(rgb) or real(
        writers, rgb, *a, **k))
    assert predict(clip, "--checkpoint", checkpoint, "--out", tmp_path / "out") == 0
    upright = np.rot90(stored[0], rotation // 90)  # as a player shows it
    assert len(seen) == 5 and seen[0].shape == upright.shape
    corner = np.unravel_index(np.argmax(seen[0][..., 0]), seen[0].shape[:2])
    assert upright[corner][0] > 200  # the bright corner is where the player shows it
    frames, _ = read_video(tmp_path / "out" / "phone.mask.mp4")
    assert frames.shape[1:3] == upright.shape[:2]
    with av.open(str(tmp_path / "out" / "phone.mask.mp4")) as container:  # written upright, no display matrix
        assert next(container.decode(video=0)).rotation == 0


def test_smoothing_averages_still_pixels_resets_on_a_cut_and_follows_motion():
    rng = np.random.default_rng(0)
    scene = np.zeros((40, 40, 3), np.uint8)
    truth = np.zeros((40, 40), np.float32)
    truth[10:30, 10:30] = 1
    smoother = TemporalSmoother()
    raw, smooth = [], []
    for _ in range(30):  # a still scene, probabilities hovering near the threshold at the figure's edge
        prob = np.clip(truth * 0.8 + 0.1 + rng.normal(0, 0.25, truth.shape), 0, 1).astype(np.float32)
        raw.append(prob >= 0.5)
        smooth.append(smoother(prob, scene) >= 0.5)
    assert 1 - consecutive_iou(smooth) < 0.5 * (1 - consecutive_iou(raw))
    cut = np.full((40, 40, 3), 255, np.uint8)  # the whole picture changes: start again from this frame
    assert np.array_equal(smoother(np.zeros((40, 40), np.float32), cut), np.zeros((40, 40), np.float32))
    assert smoother.cuts == 1
    moved = cut.copy()
    moved[:, :20] = 195  # something moved on the left half (not a cut): there the current frame counts alone
    now = smoother(np.ones((40, 40), np.float32), moved)
    assert (now[:, :16] > 0.99).all() and (now[:, 24:] < 0.5).all()


def test_smoothed_masks_flicker_less_than_per_frame_masks_on_a_still_scene(tmp_path, real_dataset):
    """The reference model on a still photo with sensor noise: consecutive masks of the output videos agree
    more with smoothing on (the flicker is 1 - their mean IoU)."""
    photo = np.asarray(Image.open(sorted((real_dataset / "Training_Images").glob("*.jpg"))[0]).convert("RGB"))
    clip = tmp_path / "still.mp4"
    make_video(clip, still_scene(photo, 12, 8), audio=None)
    flicker = {}
    for smooth in (True, False):
        out = tmp_path / f"out-{smooth}"
        assert predict(clip, "--checkpoint", REFERENCE, "--out", out, "--no-tta",
                       *([] if smooth else ["--no-smooth"])) == 0
        masks, _ = read_video(out / "still.mask.mp4")
        flicker[smooth] = 1 - consecutive_iou(masks[..., 0] > 127)
    assert flicker[False] > 0, "no flicker to remove: make the noise stronger"
    assert flicker[True] < 0.7 * flicker[False], flicker


def test_bad_videos_get_one_line_each_the_batch_goes_on_and_nothing_is_left_of_them(tmp_path, checkpoint, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_video(folder / "good.mp4", still_scene(np.full((24, 32, 3), 60, np.uint8), 3, 5), audio=None)
    sound = av.open(str(folder / "sound-only.mp4"), "w")  # a container with no video stream
    stream = sound.add_stream("aac", rate=16000)
    for i in range(5):
        chunk = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        chunk.sample_rate, chunk.pts = 16000, i * 1024
        for packet in stream.encode(chunk):
            sound.mux(packet)
    for packet in stream.encode():
        sound.mux(packet)
    sound.close()
    whole = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    make_video(tmp_path / "x.avi", still_scene(np.zeros((24, 32, 3), np.uint8), 3, 5), audio=None, codec="mpeg4")
    (folder / "unknown-codec.avi").write_bytes((tmp_path / "x.avi").read_bytes().replace(b"FMP4", b"ZZZZ"))
    (folder / "text.webm").write_text("not a video at all")
    out = tmp_path / "out"
    assert predict(folder, "--checkpoint", checkpoint, "--out", out, "--cutout") == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("seglib: skipped")]
    assert len(lines) == 4 and "Traceback" not in err, err
    assert any("sound-only.mp4: no video stream" in line for line in lines)
    assert any("truncated.mp4: " in line for line in lines)
    assert any("unknown-codec.avi: its video codec cannot be decoded" in line for line in lines)
    assert any("text.webm: not a video FFmpeg can read" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["good.cutout.mp4", "good.mask.mp4"]  # nothing of the others


def test_out_naming_the_input_video_is_refused_with_one_line(tmp_path, checkpoint, capsys):
    clip = tmp_path / "clip.mp4"
    make_video(clip, still_scene(np.zeros((24, 32, 3), np.uint8), 2, 5), audio=None)
    before = clip.read_bytes()
    assert predict(clip, "--checkpoint", checkpoint, "--out", clip) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{clip}: --out is the input" in err
    assert clip.read_bytes() == before


def test_a_video_stopped_midway_leaves_no_half_written_output(tmp_path, checkpoint, capsys, monkeypatch):
    from seglib.predict import Predictor

    clip = tmp_path / "clip.mp4"
    make_video(clip, still_scene(np.zeros((24, 32, 3), np.uint8), 8, 5))
    real, calls = Predictor.predict_proba, []

    def stop_at_the_fifth_frame(self, image):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(Predictor, "predict_proba", stop_at_the_fifth_frame)
    out = tmp_path / "out"
    assert predict(clip, "--checkpoint", checkpoint, "--out", out, "--overlay") == 130
    assert "predict stopped by SIGINT before writing any of 1 masks" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
