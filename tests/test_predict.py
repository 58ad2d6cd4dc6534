"""seglib predict: input discovery, masks at the input's exact size for every image kind, EXIF rotation,
flip TTA, bad files skipped with a clear line, refused overwrites, unsafe checkpoints, an unwritable --out."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from conftest import run_subcommand, save_tiny_checkpoint
from PIL import Image

from seglib.checkpoint import load_checkpoint
from seglib.cli.predict import add_parser
from seglib.infra.errors import CheckpointError, SeglibError
from seglib.predict import Predictor, collect_inputs, load_input, overlay_mask, plan_outputs, predict_files


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", input_size=64)


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint, device="cpu")


def run_cli(argv: list[str]) -> int:
    return run_subcommand(add_parser, argv)


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def write_kinds(folder) -> dict[str, tuple[int, int]]:
    """One file per image kind; returns name -> the (width, height) viewers show."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    Image.fromarray(noise(23, 37)).save(folder / "rgb.jpg", quality=90)
    sizes["rgb.jpg"] = (37, 23)
    Image.fromarray(noise(50, 31, 1)).save(folder / "plain.png")
    sizes["plain.png"] = (31, 50)
    Image.fromarray(noise(29, 41, 2)[..., 0]).save(folder / "gray.jpg")
    sizes["gray.jpg"] = (41, 29)
    rgba = np.dstack([noise(33, 27, 3), np.full((33, 27), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    sizes["rgba.png"] = (27, 33)
    pal = Image.fromarray(noise(19, 45, 4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png", transparency=0)
    sizes["palette.png"] = (45, 19)
    Image.fromarray((np.random.default_rng(5).random((26, 34)) * 65535).astype(np.uint16)).save(folder / "deep16.png")
    sizes["deep16.png"] = (34, 26)
    Image.new("CMYK", (44, 21), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    sizes["cmyk.jpg"] = (44, 21)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(noise(20, 40, 6)).save(folder / "rotated.jpg", exif=exif.tobytes())
    sizes["rotated.jpg"] = (20, 40)  # stored 40x20, shown 20x40
    Image.fromarray(noise(3, 300, 7)).save(folder / "thin.png")
    sizes["thin.png"] = (300, 3)
    return sizes


def test_image_kinds_give_masks_at_the_displayed_size(tmp_path, checkpoint, capsys):
    sizes = write_kinds(tmp_path / "in")
    with Image.open(tmp_path / "in" / "deep16.png") as im:
        assert im.mode.startswith("I")
    with Image.open(tmp_path / "in" / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    with Image.open(tmp_path / "in" / "rotated.jpg") as im:
        assert im.size == (40, 20)
    out = tmp_path / "out"
    code = run_cli(["predict", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--out", str(out), "--overlay"])
    assert code == 0
    captured = capsys.readouterr()
    for name, size in sizes.items():
        stem = name.rsplit(".", 1)[0]
        with Image.open(out / f"{stem}.mask.png") as m:
            assert m.size == size, name
            assert m.mode == "L"
            assert set(np.unique(np.asarray(m)).tolist()) <= {0, 255}, name
        with Image.open(out / f"{stem}.overlay.jpg") as ov:
            assert ov.size == size and ov.mode == "RGB"
    assert "rotated.jpg: EXIF orientation 6 applied; mask matches the photo as viewers show it" in captured.out
    assert f"wrote {len(sizes)} masks and {len(sizes)} overlays to {out}; 0 failed" in captured.out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_predict_files_api_reports_exif_rotation(tmp_path, predictor):
    write_kinds(tmp_path / "in")
    report = predict_files(predictor, [tmp_path / "in" / "rotated.jpg", tmp_path / "in" / "plain.png"],
                           tmp_path / "out", progress=False)
    assert report.ok and report.failed == []
    assert report.exif_rotated == [tmp_path / "in" / "rotated.jpg"]
    assert report.written == [tmp_path / "out" / "rotated.mask.png", tmp_path / "out" / "plain.mask.png"]
    rgb, orientation = load_input(tmp_path / "in" / "rotated.jpg")
    assert rgb.shape == (40, 20, 3) and orientation == 6
    mask = np.asarray(Image.open(report.outputs[tmp_path / "in" / "rotated.jpg"]))
    np.testing.assert_array_equal(mask, predictor.predict_mask(rgb) * 255)


def test_tta_is_the_mean_of_plain_and_flipped(checkpoint, tmp_path):
    plain = Predictor.from_checkpoint(checkpoint, tta=False)
    tta = Predictor.from_checkpoint(checkpoint, tta=True)
    # sizes whose letterbox is symmetric (no resize, even padding), so flipping the photo == flipping the tensor
    for h, w in ((64, 64), (64, 32), (40, 64)):
        img = noise(h, w, h + w)
        expected = 0.5 * (plain.predict_proba(img) + plain.predict_proba(img[:, ::-1].copy())[:, ::-1])
        got = tta.predict_proba(img)
        assert got.shape == (h, w)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert not np.allclose(got, plain.predict_proba(img), atol=1e-6)
    # the CLI flag: the written mask is the thresholded TTA probability
    Image.fromarray(noise(64, 32, 9)).save(tmp_path / "a.png")
    assert run_cli(["predict", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--out",
                    str(tmp_path / "out"), "--tta", "--threshold", "0.5", "--no-progress"]) == 0
    mask = np.asarray(Image.open(tmp_path / "out" / "a.mask.png"))
    np.testing.assert_array_equal(mask, ((tta.predict_proba(noise(64, 32, 9)) >= 0.5) * 255).astype(np.uint8))


def test_bad_files_are_skipped_and_reported(tmp_path, checkpoint, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(noise(30, 20)).save(folder / "good1.jpg")
    Image.fromarray(noise(25, 35)).save(folder / "good2.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(noise(120, 160)).save(buf, format="JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "notes.jpg").write_text("this is not a photo\n")
    out = tmp_path / "out"
    code = run_cli(["predict", str(folder), str(tmp_path / "missing.jpg"), "--checkpoint", str(checkpoint),
                    "--out", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("seglib: skipped ")]
    assert len(skipped) == 5, captured.err
    for name in ("corrupt.png", "empty.jpg", "truncated.jpg", "notes.jpg", "missing.jpg"):
        assert any(name in line for line in skipped), name
    assert any("empty file" in line for line in skipped)
    assert any("missing.jpg: file not found" in line for line in skipped)
    assert sorted(p.name for p in out.iterdir()) == ["good1.mask.png", "good2.mask.png", "quality.csv"]
    assert f"wrote 2 masks to {out}; 5 failed" in captured.out
    assert "Traceback" not in captured.err


def test_existing_outputs_are_not_overwritten(tmp_path, checkpoint, capsys):
    Image.fromarray(noise(30, 20)).save(tmp_path / "photo.jpg")
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "photo.jpg"), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert run_cli(argv) == 0
    (out / "photo.mask.png").write_bytes(b"keep me")
    with pytest.raises(SeglibError, match=r"photo\.mask\.png already exists.*--overwrite"):
        run_cli(argv)
    assert (out / "photo.mask.png").read_bytes() == b"keep me"
    assert run_cli(argv + ["--overwrite"]) == 0
    with Image.open(out / "photo.mask.png") as m:
        assert m.size == (20, 30)


def test_same_stem_from_different_folders_is_disambiguated(tmp_path, predictor):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(noise(16, 24)).save(tmp_path / sub / "photo.jpg")
    Image.fromarray(noise(16, 24)).save(tmp_path / "a" / "photo.png")
    report = predict_files(predictor, [tmp_path / "a", tmp_path / "b"], tmp_path / "out", progress=False)
    assert sorted(p.name for p in report.written) == ["photo-2.mask.png", "photo-3.mask.png", "photo.mask.png"]
    assert len(set(report.outputs.values())) == 3
    plan = plan_outputs([tmp_path / "x" / "Img.jpg", tmp_path / "y" / "img.jpg"], tmp_path / "o")
    assert [item.mask.name for item in plan] == ["Img.mask.png", "img-2.mask.png"]  # distinct on case-insensitive FS


def test_collect_inputs(tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.JPG", "a.jpeg", "c.png", "sub/deep.jpg", ".hidden.jpg", "a.mask.png", "a.overlay.jpg"):
        Image.fromarray(noise(8, 8)).save(folder / name, format="PNG")
    (folder / "readme.txt").write_text("x")
    found = collect_inputs([folder, folder / "c.png", tmp_path / "nope.png"])
    assert [p.name for p in found] == ["a.jpeg", "b.JPG", "c.png", "nope.png"]  # sorted, once each, missing kept
    (tmp_path / "empty").mkdir()
    notes: list[str] = []
    with pytest.raises(SeglibError, match="no input images"):
        collect_inputs([tmp_path / "empty"], warn=notes.append)
    assert len(notes) == 1 and "no image or video files (.jpg/.jpeg/.png/" in notes[0]
    assert capsys.readouterr().err == ""  # the library only reports; the CLI prints


def test_unsafe_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "MARKER"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "seglib-checkpoint/1", "payload": Evil()}, tmp_path / "evil.pt")
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    with pytest.raises(CheckpointError, match="refused as unsafe"):
        run_cli(["predict", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "evil.pt"),
                 "--out", str(tmp_path / "out")])
    assert not marker.exists()
    assert not (tmp_path / "out" / "a.mask.png").exists()


def test_unwritable_out_fails_before_any_work(tmp_path):
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    out = tmp_path / "out-is-a-file"
    out.write_text("")
    # the checkpoint does not exist either: the error must be about --out, raised before loading anything
    with pytest.raises(SeglibError, match="out-is-a-file: is a file, not a folder"):
        run_cli(["predict", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)])


def test_run_option_uses_the_val_threshold(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("SEGLIB_RUNS_DIR", str(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / "r1"
    (run_dir / "eval" / "val").mkdir(parents=True)
    (run_dir / "best.pt").write_bytes(checkpoint.read_bytes())
    epoch = load_checkpoint(checkpoint)["epoch"]
    metrics = run_dir / "eval" / "val" / "metrics.json"
    metrics.write_text(json.dumps({"threshold": 0.3, "checkpoint": "x/best.pt", "checkpoint_epoch": epoch + 1}))
    assert Predictor.from_run("r1").threshold_source == "stored in the checkpoint"  # chosen for another epoch
    metrics.write_text(json.dumps({"threshold": 0.3, "checkpoint": "x/best.pt", "checkpoint_epoch": epoch}))
    p = Predictor.from_run("r1")
    assert p.threshold == pytest.approx(0.3) and "chosen on val" in p.threshold_source
    assert Predictor.from_run("r1", threshold=0.7).threshold == pytest.approx(0.7)
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    assert run_cli(["predict", str(tmp_path / "a.png"), "--run", "r1", "--out", str(tmp_path / "out"),
                    "--device", "cpu"]) == 0
    assert "threshold 0.3 (chosen on val" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="run 'nope' not found"):
        run_cli(["predict", str(tmp_path / "a.png"), "--run", "nope", "--out", str(tmp_path / "out2")])


def test_usage_errors(tmp_path, checkpoint):
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    base = ["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]
    for argv in (base + ["--run", "r", "--checkpoint", str(checkpoint)],  # both
                 base + ["--checkpoint", str(checkpoint), "--threshold", "1.5"]):
        with pytest.raises(SystemExit) as exc:
            run_cli(argv)
        assert exc.value.code == 2


def test_with_no_model_named_the_default_model_predicts_and_is_named(tmp_path, checkpoint, monkeypatch, capsys):
    from seglib.studies import candidates

    listing = tmp_path / "models.yaml"
    listing.write_text(f"default: tiny\nmodels:\n  - {{name: tiny, checkpoint: {checkpoint}, about: a tiny net}}\n")
    monkeypatch.setattr(candidates, "models_file", lambda: listing)
    Image.fromarray(noise(8, 8)).save(tmp_path / "a.png")
    assert run_cli(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "a.mask.png").is_file()
    assert "the default model tiny" in capsys.readouterr().err
    listing.write_text("default: tiny\nmodels:\n  - {name: tiny, checkpoint: gone/best.pt, about: a tiny net}\n")
    with pytest.raises(SeglibError, match=r"no model named and the default model is not here \(.*gone/best.pt\): "
                                          r"name one with --run or --checkpoint"):
        run_cli(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out2")])
    assert not (tmp_path / "out2").exists()


def test_overlay_mask():
    rgb = noise(20, 30)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255
    out = overlay_mask(rgb, mask)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], rgb[mask == 0])
    assert (out[5, 10] == (0, 255, 0)).all()  # outline
    inner = out[8:12, 13:17].astype(int)
    assert (inner[..., 1] >= rgb[8:12, 13:17, 1]).all()  # tinted towards green
    np.testing.assert_array_equal(overlay_mask(rgb, mask // 255), out)  # 0/1 works the same
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(rgb, mask[:10])


# case 15 of the new-user trial: a folder scan takes every format that works when named one by one
def test_folder_scan_takes_webp_tiff_gif_and_says_when_an_animation_gives_its_first_frame(checkpoint, tmp_path,
                                                                                          capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(noise(21, 34)).save(folder / "a.webp")
    Image.fromarray(noise(22, 35, 1)).save(folder / "b.tif")
    Image.fromarray(noise(23, 36, 2)).save(folder / "c.bmp")
    frames = [Image.fromarray(noise(24, 37, s)).convert("P") for s in range(3)]
    frames[0].save(folder / "d.gif", save_all=True, append_images=frames[1:], duration=50)
    assert [p.name for p in collect_inputs(folder)] == ["a.webp", "b.tif", "c.bmp", "d.gif"]
    assert run_cli(["predict", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path / "out"),
                    "--no-progress", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mask.png", "b.mask.png", "c.mask.png",
                                                                    "d.mask.png", "quality.csv"]
    assert Image.open(tmp_path / "out" / "d.mask.png").size == (37, 24)
    assert "d.gif: 3 frames (animated or multi-page); the outputs are for the first frame" in captured.out


def test_folder_scan_takes_a_phone_s_heic_and_an_avif_with_masks_as_viewers_show_them(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[274] = 6  # a phone held upright: stored landscape, shown portrait
    Image.fromarray(noise(21, 34)).save(folder / "IMG_0001.HEIC", exif=exif.tobytes())
    Image.fromarray(noise(22, 35, 1)).save(folder / "b.avif")
    assert [p.name for p in collect_inputs(folder)] == ["IMG_0001.HEIC", "b.avif"]
    assert run_cli(["predict", "--checkpoint", str(checkpoint), str(folder), "--out", str(tmp_path / "out"),
                    "--no-progress", "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "out" / "IMG_0001.mask.png").size == (21, 34)
    assert Image.open(tmp_path / "out" / "b.mask.png").size == (35, 22)


def test_a_model_trained_on_stretched_photos_predicts_on_stretched_photos(tmp_path):
    """geometry=resize travels with the checkpoint: the photo is stretched to the square, not letterboxed."""
    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.models.model import UNet
    from seglib.profiles import make_config

    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2)
    photo = np.random.default_rng(0).integers(0, 255, (30, 90, 3), dtype=np.uint8)  # 3:1 landscape
    probs = {}
    for geometry in ("letterbox", "resize"):
        cfg = make_config("smoke", {"input_size": 32, "geometry": geometry})
        path = save_checkpoint(make_checkpoint(model, cfg, epoch=1, val_iou=0.5, best_val_iou=0.5),
                               tmp_path / f"{geometry}.pt")
        predictor = Predictor.from_checkpoint(path)
        assert predictor.geometry == geometry
        probs[geometry] = predictor.predict_proba(photo)
        assert probs[geometry].shape == (30, 90)
    # the letterboxed input is mostly padding (a 32x11 strip of photo), the stretched one all photo
    assert not np.allclose(probs["letterbox"], probs["resize"], atol=1e-3)


def test_rect_predictions_in_a_batch_of_mixed_shapes_equal_one_by_one(tmp_path):
    """geometry=rect: photos of different aspects in one call are grouped by input shape; same result as alone."""
    from seglib.checkpoint import make_checkpoint, save_checkpoint
    from seglib.models.model import UNet
    from seglib.profiles import make_config

    torch.manual_seed(0)
    cfg = make_config("smoke", {"input_size": 32, "geometry": "rect"})
    path = save_checkpoint(make_checkpoint(UNet(base_channels=4, depth=2), cfg, epoch=1, val_iou=0.5,
                                           best_val_iou=0.5), tmp_path / "rect.pt")
    predictor = Predictor.from_checkpoint(path, tta=True)
    assert predictor.network_input(np.zeros((30, 90, 3), np.uint8)).shape == (3, 12, 32)
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in [(30, 90, 3), (90, 30, 3), (31, 88, 3)]]
    together = predictor.predict_proba_batch(photos)
    for photo, prob in zip(photos, together, strict=True):
        assert prob.shape == photo.shape[:2]
        np.testing.assert_allclose(prob, predictor.predict_proba(photo), atol=1e-5)


# ---------------------------------------------------- stored normalisation, given thresholds, interrupts (issue 21)


def test_a_checkpoint_whose_stored_normalisation_differs_is_refused_not_ignored(tmp_path, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["normalization"] = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    path = tmp_path / "other-normalisation.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        Predictor.from_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field 'normalization' is mean [0.5, 0.5, 0.5] std [0.25, 0.25, 0.25]")
    assert "its masks would be wrong" in message and "\n" not in message


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_a_given_threshold_outside_0_and_1_is_refused_by_the_predictor(checkpoint, threshold):
    with pytest.raises(SeglibError, match="must be between 0 and 1"):
        Predictor.from_checkpoint(checkpoint, threshold=threshold)


def _photos(folder, n: int = 5) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(noise(20 + i, 30, i)).save(folder / f"p{i}.png")
    return sorted(folder.iterdir())


def _interrupt_on_call(monkeypatch, module, name: str, call: int, raise_it) -> None:
    """Replace module.name so that its `call`-th call runs `raise_it()` (before doing its work)."""
    real, calls = getattr(module, name), []

    def patched(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise_it()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, patched)


def _ctrl_c() -> None:
    raise KeyboardInterrupt


def _sigterm() -> None:
    """A real SIGTERM to this process: seglib.cli.main's handler turns it into Terminated right here."""
    import signal

    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize(("stop", "code", "named"), [(_ctrl_c, 130, "SIGINT"), (_sigterm, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_an_interrupted_predict_says_how_many_masks_it_wrote_and_where(tmp_path, checkpoint, capsys, monkeypatch,
                                                                        stop, code, named):
    from seglib.cli import main

    photos = _photos(tmp_path / "photos")
    from seglib.predict import files

    _interrupt_on_call(monkeypatch, files, "_write_behind", 3, stop)  # in the main thread, as signals are
    out = tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(checkpoint), *map(str, photos), "--out", str(out),
                 "--no-progress"]) == code
    err = capsys.readouterr().err
    assert f"predict stopped by {named} after writing 2 of 5 masks to {out}" in err and "3 not written" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["p0.mask.png", "p1.mask.png"]  # no temporary file left


def test_an_interrupt_while_a_mask_is_being_written_leaves_no_half_written_file(tmp_path, checkpoint, capsys,
                                                                                monkeypatch):
    import signal
    from pathlib import Path

    from seglib.cli import main
    from seglib.infra.signals import Terminated

    photos = _photos(tmp_path / "photos", 4)
    out = tmp_path / "masks"
    real_save, real_write, saves = Image.Image.save, Path.write_bytes, []

    def stop_at_the_third(fp) -> None:  # the third output (p1's mask): half its bytes on disk, then SIGTERM
        if Path(fp).parent != out:  # not an output (the model's cached export)
            return
        saves.append(fp)
        if len(saves) == 3:
            with open(fp, "wb") as fh:
                fh.write(b"\x89PNG\r\n\x1a\n half")
            raise Terminated(signal.SIGTERM)

    def save_then_stop(self, fp, *args, **kwargs):  # overlays (Pillow)
        stop_at_the_third(fp)
        return real_save(self, fp, *args, **kwargs)

    def write_then_stop(self, data):  # masks (encoded by OpenCV, written as bytes)
        stop_at_the_third(self)
        return real_write(self, data)

    monkeypatch.setattr(Image.Image, "save", save_then_stop)
    monkeypatch.setattr(Path, "write_bytes", write_then_stop)
    assert main(["predict", "--checkpoint", str(checkpoint), *map(str, photos), "--out", str(out), "--overlay",
                 "--no-progress"]) == 143
    err = capsys.readouterr().err
    # p0: mask + overlay written; p1's mask was the interrupted write: its temporary file is gone, not renamed
    assert "after writing 1 of 4 masks" in err and "3 not written" in err
    assert sorted(p.name for p in out.iterdir()) == ["p0.mask.png", "p0.overlay.jpg"]
    for mask in out.glob("*.png"):
        with Image.open(mask) as m:
            m.load()


def test_predict_stopped_by_sigterm_from_outside_exits_143_and_says_what_it_wrote(tmp_path, checkpoint):
    import signal
    import subprocess
    import sys
    import time

    photos = _photos(tmp_path / "photos", 40)
    out = tmp_path / "masks"
    slow = ("import sys, time; import seglib.predict.files as p; real = p.load_input\n"
            "p.load_input = lambda path: (time.sleep(0.1), real(path))[1]\n"
            "from seglib.cli import main; sys.exit(main(sys.argv[1:]))")
    child = subprocess.Popen([sys.executable, "-c", slow, "predict", "--checkpoint", str(checkpoint),
                              *map(str, photos), "--out", str(out), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(out.glob("*.mask.png"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err
    written = sorted(p.name for p in out.iterdir())
    assert all(name.endswith(".mask.png") for name in written) and 0 < len(written) < 40  # nothing half-written
    assert f"predict stopped by SIGTERM after writing {len(written)} of 40 masks to {out}" in err
    assert "Traceback" not in err


def test_a_folder_scan_says_how_many_of_predicts_own_outputs_it_left_out(tmp_path, checkpoint, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.mask.png", "c.overlay.jpg", "d.Mask.PNG"):
        Image.fromarray(noise(8, 8)).save(folder / name, format="PNG")
    notes: list[str] = []
    assert [p.name for p in collect_inputs([folder], warn=notes.append)] == ["a.png"]
    assert notes == [f"seglib: note: {folder}: left out 3 files named *.mask.*, *.overlay.*, *.cutout.* or "
                     "*.background.* (predict's own "
                     "outputs); name a file to predict it anyway"]
    given = collect_inputs([folder / "b.mask.png"], warn=notes.append)  # named as a file: taken as given
    assert [p.name for p in given] == ["b.mask.png"] and len(notes) == 1
    assert run_cli(["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                    "--no-progress"]) == 0
    assert "left out 3 files named *.mask.*" in capsys.readouterr().err


def test_predict_interrupted_before_its_first_mask_says_nothing_was_written_and_leaves_no_folder(
        tmp_path, checkpoint, capsys, monkeypatch):
    from seglib.cli import main

    photos = _photos(tmp_path / "photos", 3)
    _interrupt_on_call(monkeypatch, Predictor, "predict_proba", 1, _ctrl_c)
    out = tmp_path / "new" / "masks"
    assert main(["predict", "--checkpoint", str(checkpoint), *map(str, photos), "--out", str(out)]) == 130
    assert "predict stopped by SIGINT before writing any of 3 masks; nothing written" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# ------------------------------------------- one writer per --out, fenced folders, names, full disks (issue 35)

# The children import everything, then wait for the same start signal: they reach `predict` together.
CONCURRENT = """
import sys, time
from pathlib import Path
import seglib.checkpoint, seglib.predict.files, seglib.predict.predictor  # noqa: F401 (the slow imports first)
from seglib.cli import main
real = seglib.predict.files.load_input  # each photo slowed: the first writer still holds --out when the other asks
seglib.predict.files.load_input = lambda path: (time.sleep(0.5), real(path))[1]
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[3:]))
"""


def _masks(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_two_predicts_into_one_out_started_together_one_is_refused_the_other_intact(tmp_path):
    """Case 2: two `seglib predict` with different models into the same --out, started together: one is refused at
    once with one line naming the other's pid, and every mask is the other's, as a run alone writes them."""
    import subprocess
    import sys
    import time

    from seglib.cli import main

    photos = _photos(tmp_path / "photos", 6)
    models = {seed: save_tiny_checkpoint(tmp_path / f"model{seed}.pt", input_size=64, seed=seed) for seed in (1, 2)}

    threshold = {1: "0.01", 2: "0.99"}  # untrained models: their masks all person and all background

    def argv(seed, out):
        return ["predict", "--checkpoint", str(models[seed]), *map(str, photos), "--out", str(out), "--threshold",
                threshold[seed], "--runtime", "torch", "--device", "cpu", "--no-progress"]

    alone = {}
    for seed in models:
        assert main(argv(seed, tmp_path / f"alone{seed}")) == 0
        alone[seed] = _masks(tmp_path / f"alone{seed}")
    assert alone[1] != alone[2]  # the two models' masks differ
    shared, go = tmp_path / "shared", tmp_path / "go"
    procs = {seed: subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path / f"ready{seed}"), str(go),
                                     *argv(seed, shared)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in models}
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{s}").exists() for s in procs) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    done = {seed: (p.pid, *p.communicate(timeout=240), p.returncode) for seed, p in procs.items()}
    assert sorted(code for *_, code in done.values()) == [0, 2], done
    winner = next(seed for seed, (*_, code) in done.items() if code == 0)
    lines = done[3 - winner][2].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"seglib: error: {shared}: in use by pid {done[winner][0]}"), done
    assert _masks(shared) == alone[winner]
    assert not list(shared.glob(".*"))  # no lock file left


def test_predict_never_writes_into_a_registered_sets_folder_or_an_input_folder(tmp_path, checkpoint, capsys,
                                                                               monkeypatch):
    """Case 10: --out in a registered set's photo or mask folder (or below it), or the folder of the photos
    predict reads, is refused with one line before any work; nothing is written or created there."""
    from conftest import photo_folders

    from seglib.cli import main

    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    images, masks = photo_folders(tmp_path / "mine", n=4)
    assert main(["data", "add", "mine", "--images", str(images), "--masks", str(masks)]) == 0
    photos = _photos(tmp_path / "photos", 2)
    capsys.readouterr()
    before = {folder: sorted(p.name for p in folder.iterdir()) for folder in (images, masks, photos[0].parent)}
    for out, inputs, says in ((images, photos, "registered data set 'mine'"),
                              (masks / "new", photos, "registered data set 'mine'"),
                              (photos[0].parent, photos, "the folder of the photos predict reads")):
        code = main(["predict", "--checkpoint", str(checkpoint), *map(str, inputs), "--out", str(out), "--overwrite",
                     "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: "), err
        assert says in err and "refusing to write there" in err
    assert {folder: sorted(p.name for p in folder.iterdir()) for folder in before} == before
    assert not (masks / "new").exists()
    assert main(["predict", "--checkpoint", str(checkpoint), str(photos[0]), "--out",
                 str(photos[0].parent / "masks"), "--no-progress"]) == 0  # a new folder beside the photos is fine


def test_output_names_of_inputs_sharing_a_stem_clash_with_no_other_input_and_the_summary_maps_them(tmp_path,
                                                                                                  checkpoint, capsys):
    """Case 11: a/x.jpg, b/x.jpg, c/x-2.jpg: c keeps its own name x-2, b gets a name no input has, and the summary
    says which input went to which renamed output."""
    for sub, name in (("a", "x.jpg"), ("b", "x.jpg"), ("c", "x-2.jpg")):
        (tmp_path / sub).mkdir()
        Image.fromarray(noise(16, 24)).save(tmp_path / sub / name)
    inputs = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "c" / "x-2.jpg"]
    plan = plan_outputs(inputs, tmp_path / "out")
    names = [item.mask.name for item in plan]
    assert names[0] == "x.mask.png" and names[2] == "x-2.mask.png" and len(set(names)) == 3
    out = tmp_path / "out"
    assert run_cli(["predict", *map(str, inputs), "--checkpoint", str(checkpoint), "--out", str(out),
                    "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "quality.csv"])
    assert f"{inputs[1]} -> {names[1]}" in printed
    assert f"{inputs[0]} ->" not in printed and f"{inputs[2]} ->" not in printed  # natural names are not listed


def test_a_full_disk_stops_predict_at_the_first_failed_write_with_one_line_naming_the_file(tmp_path, checkpoint,
                                                                                            capsys, monkeypatch):
    """A write refused for lack of space (ENOSPC, EDQUOT) stops the batch there with one line naming the file;
    the masks written before it are whole, and no other photo is tried."""
    import errno

    from seglib.cli import main
    from seglib.predict import files

    photos = _photos(tmp_path / "photos", 5)
    out = tmp_path / "masks"
    real, calls = files.save_png_atomic, []

    def full_from_the_second(path, array):
        calls.append(path)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, array)

    monkeypatch.setattr(files, "save_png_atomic", full_from_the_second)
    assert main(["predict", "--checkpoint", str(checkpoint), *map(str, photos), "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out / 'p1.mask.png'}: "), err
    assert "No space left on device" in err and "1 of 5 masks" in err
    assert len(calls) == 2  # stopped at the first full write, not tried on every photo
    assert sorted(p.name for p in out.iterdir()) == ["p0.mask.png"]


def test_an_overwrite_stopped_by_sigterm_says_how_many_outputs_still_hold_the_earlier_files(tmp_path, checkpoint,
                                                                                            capsys, monkeypatch):
    from seglib.cli import main
    from seglib.predict import files

    photos = _photos(tmp_path / "photos", 5)
    out = tmp_path / "masks"
    argv = ["predict", "--checkpoint", str(checkpoint), *map(str, photos), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    _interrupt_on_call(monkeypatch, files, "_write_behind", 3, _sigterm)
    assert main([*argv, "--overwrite"]) == 143
    err = capsys.readouterr().err
    assert "after writing 2 of 5 masks" in err and "3 not written" in err
    assert "3 files in" in err and "still hold the earlier run's outputs" in err
