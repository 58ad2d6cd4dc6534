"""The runtime predict picks: ONNX Runtime on the CPU from an export made once and cached by content (masks equal
to PyTorch's), PyTorch when asked or when the export fails (with a note); the first line is printed before the
model loads; decoding ahead and writing behind keep the inputs' order and outputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import save_tiny_checkpoint
from PIL import Image

from seglib.predict.pipeline import WriteBehind, decoded_ahead

pytest.importorskip("onnxruntime")


@pytest.fixture
def checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path / "ckpt" / "tiny.pt", input_size=64)


def photos(folder, n: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((30 + i, 50, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def predict(*argv) -> int:
    from seglib.cli import main

    return main(["predict", *map(str, argv), "--no-progress"])


def test_on_the_cpu_predict_runs_a_cached_onnx_export_with_the_same_masks_as_pytorch(tmp_path, checkpoint, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("SEGLIB_CACHE_DIR", str(tmp_path / "cache"))
    folder = photos(tmp_path / "in")
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "onnx", "--device", "cpu") == 0
    assert f"{checkpoint} in ONNX Runtime" in capsys.readouterr().out
    exports = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exports) == 1
    made = exports[0].stat().st_mtime_ns
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "again", "--device", "cpu") == 0
    assert exports[0].stat().st_mtime_ns == made  # exported once
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "torch", "--runtime", "torch") == 0
    for i in range(4):
        onnx = np.asarray(Image.open(tmp_path / "onnx" / f"p{i}.mask.png"))
        torch_ = np.asarray(Image.open(tmp_path / "torch" / f"p{i}.mask.png"))
        assert (onnx == torch_).mean() > 0.999


def test_a_run_with_a_cached_export_does_not_import_torch_and_writes_the_same_masks(tmp_path, checkpoint):
    """On a machine without CUDA the second run loads the cached export with NumPy, OpenCV and ONNX Runtime only."""
    from seglib.predict.runtimes import cuda_ruled_out

    if not cuda_ruled_out():
        pytest.skip("this machine may have CUDA: predict asks torch which device to use")
    folder = photos(tmp_path / "in")
    env = {**os.environ, "SEGLIB_CACHE_DIR": str(tmp_path / "cache")}
    code = ("import sys; from seglib.cli import main; rc = main(sys.argv[1:]); "
            "print('torch imported:', 'torch' in sys.modules, 'onnx imported:', 'onnx' in sys.modules); sys.exit(rc)")
    runs = {}
    for name in ("first", "cached"):
        argv = ["predict", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / name), "--no-progress"]
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[name] = done.stdout
    assert "torch imported: True" in runs["first"]  # the export is made from the checkpoint in PyTorch
    # the export's bytes are the ones verified when it was made: not parsed again with the onnx package
    assert "torch imported: False onnx imported: False" in runs["cached"]
    assert f"{checkpoint} in ONNX Runtime" in runs["cached"]
    for i in range(4):
        first = np.asarray(Image.open(tmp_path / "first" / f"p{i}.mask.png"))
        assert np.array_equal(first, np.asarray(Image.open(tmp_path / "cached" / f"p{i}.mask.png")))


def test_a_damaged_cached_export_is_made_again_with_a_note(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("SEGLIB_CACHE_DIR", str(tmp_path / "cache"))
    folder = photos(tmp_path / "in", 1)
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "a", "--device", "cpu") == 0
    (export,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    good = export.read_bytes()
    export.write_bytes(good[: len(good) // 3])  # cut short, as by a full disk or a copy stopped halfway
    capsys.readouterr()
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "b", "--device", "cpu") == 0
    captured = capsys.readouterr()
    assert f"seglib: note: {export}" in captured.err and f"exporting {checkpoint} again" in captured.err
    assert f"{checkpoint} in ONNX Runtime" in captured.out
    assert len(export.read_bytes()) == len(good)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / "p0.mask.png")),
                          np.asarray(Image.open(tmp_path / "b" / "p0.mask.png")))


def test_a_failed_export_falls_back_to_pytorch_with_a_note(tmp_path, checkpoint, capsys, monkeypatch):
    import seglib.predict.runtimes as runtimes

    def cannot(_checkpoint, **_options):
        raise RuntimeError("this graph does not export")

    monkeypatch.setattr(runtimes, "cached_export", cannot)
    monkeypatch.setenv("SEGLIB_CACHE_DIR", str(tmp_path / "cache"))  # no export cached by an earlier test
    folder = photos(tmp_path / "in", 1)
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "out", "--device", "cpu") == 0
    captured = capsys.readouterr()
    assert "no ONNX export (this graph does not export); predicting in PyTorch" in captured.err
    assert "in ONNX Runtime" not in captured.out
    assert predict(folder, "--checkpoint", checkpoint, "--out", tmp_path / "out2", "--runtime", "onnx") == 2
    assert "cannot run in ONNX Runtime (this graph does not export)" in capsys.readouterr().err


def test_predict_says_what_it_will_do_before_the_model_loads(tmp_path, checkpoint):
    folder = photos(tmp_path / "in", 2)
    child = subprocess.Popen([sys.executable, "-m", "seglib", "predict", str(folder), "--checkpoint",
                              str(checkpoint), "--out", str(tmp_path / "out"), "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = child.stdout.readline()  # how soon it comes is `make bench`'s to measure, not a test's
    child.communicate(timeout=120)
    assert child.returncode == 0
    assert first.startswith(f"predict: 2 inputs -> {tmp_path / 'out'}; loading {checkpoint}")


def test_decoding_ahead_keeps_the_order_and_raises_at_the_failing_item():
    seen = list(decoded_ahead(range(7), lambda i: i * i))
    assert seen == [(i, i * i) for i in range(7)]

    def decode(i):
        if i == 4:
            raise KeyboardInterrupt
        return i

    got = []
    with pytest.raises(KeyboardInterrupt):
        for item, _ in decoded_ahead(range(7), decode):
            got.append(item)
    assert got == [0, 1, 2, 3]


def test_several_workers_keep_the_order_though_items_finish_out_of_it():
    finished: list[int] = []

    def slow_for_even(i):
        time.sleep(0.03 if i % 2 == 0 else 0.0)
        finished.append(i)
        return -i

    seen = list(decoded_ahead(range(9), slow_for_even, workers=3))
    assert seen == [(i, -i) for i in range(9)]
    assert finished != sorted(finished)  # they did run side by side


def test_a_folder_is_predicted_side_by_side_in_single_threaded_sessions_with_the_same_masks(tmp_path, checkpoint,
                                                                                              monkeypatch):
    from seglib.predict.files import predict_files, side_by_side
    from seglib.predict.runtimes import load_predictor

    monkeypatch.setenv("SEGLIB_CACHE_DIR", str(tmp_path / "cache"))
    predictor = load_predictor(checkpoint, device="cpu")
    twin, workers = side_by_side(predictor, photos=5)
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: photos are predicted one at a time")
    assert workers == min(cores, 5) and twin is not predictor
    assert twin.network.session.get_session_options().intra_op_num_threads == 1
    assert predictor.network.session.get_session_options().intra_op_num_threads == cores  # the caller's unchanged
    assert side_by_side(predictor, photos=1) == (predictor, 1)
    folder = photos(tmp_path / "in", n=6)
    predict_files(predictor, [folder], tmp_path / "out", progress=False)
    for i in range(6):
        rgb = np.asarray(Image.open(folder / f"p{i}.png").convert("RGB"))
        alone = (predictor.predict_proba(rgb) >= predictor.threshold).astype(np.uint8) * 255
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / f"p{i}.mask.png")), alone)


def test_writing_behind_runs_jobs_in_order_and_skips_those_queued_after_an_interrupt():
    done: list[int] = []

    def job(i):
        def run():
            time.sleep(0.01)
            if i == 2:
                raise KeyboardInterrupt
            done.append(i)
        return run

    writer = WriteBehind()
    with pytest.raises(KeyboardInterrupt):
        for i in range(6):
            writer.submit(job(i))
        writer.harvest(wait=True)
    writer.close()
    assert done == [0, 1]



def _poisoned(path) -> None:
    """The ONNX file at `path` with its first float weight set to NaN."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    tensor = next(t for t in proto.graph.initializer if numpy_helper.to_array(t).dtype == np.float32)
    array = numpy_helper.to_array(tensor).copy()
    array.flat[0] = np.nan
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(proto, str(path))


@pytest.mark.parametrize(("spoil", "says"), [("nan-weight", "holds non-finite values (NaN or inf)"),
                                             ("another-checkpoint", "was exported from another checkpoint")])
def test_a_cached_export_with_nan_weights_or_of_another_checkpoint_is_made_again_with_a_note(
        tmp_path, checkpoint, capsys, monkeypatch, spoil, says):
    """Case 6: a cached export is used only when its recorded source hash is the checkpoint's and its weights are
    finite (what --onnx checks); otherwise it is made again, with one note saying why."""
    from seglib.export import export_onnx
    from seglib.predict.runtimes import export_path

    monkeypatch.setenv("SEGLIB_CACHE_DIR", str(tmp_path / "cache"))
    folder = photos(tmp_path / "in", 2)
    common = ["--checkpoint", checkpoint, "--device", "cpu", "--threshold", "0.45"]  # this model's masks: all person
    assert predict(folder, *common, "--out", tmp_path / "first") == 0
    cached = export_path(checkpoint)
    if spoil == "nan-weight":
        _poisoned(cached)
    else:  # another model (all background at this threshold) under this checkpoint's cache name
        export_onnx(save_tiny_checkpoint(tmp_path / "other.pt", input_size=64, seed=1), cached, overwrite=True)
    capsys.readouterr()
    assert predict(folder, *common, "--out", tmp_path / "again") == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("seglib: note: ")]
    assert len(notes) == 1 and notes[0].startswith(f"seglib: note: {cached}: "), captured.err
    assert says in notes[0] and notes[0].endswith(f"exporting {checkpoint} again")
    assert f"{checkpoint} in ONNX Runtime" in captured.out
    for i in range(2):
        first = np.asarray(Image.open(tmp_path / "first" / f"p{i}.mask.png"))
        assert first.any() and np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / f"p{i}.mask.png")))
