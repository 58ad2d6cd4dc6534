"""seglib.export: ONNX export of each model kind, verified against PyTorch; metadata round trip; ONNX-backed
Predictor masks equal PyTorch's; every kind takes other image sizes (MediaPipe's graph too), a graph that bakes
its size in is exported at a fixed size, fixed sizes are refused; overwrite and bad files."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import pytest
import torch
from conftest import draw_pair, save_tiny_checkpoint

from seglib.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from seglib.export import FORMAT, LOGIT_ATOL, LOGIT_RTOL, export_onnx
from seglib.infra.errors import CheckpointError, SeglibError
from seglib.models.model import build_model
from seglib.onnx_session import OnnxNetwork, load_onnx_network
from seglib.predict import Predictor
from seglib.profiles import make_config

SIZE = 64
PROB_MARGIN = 1e-3  # pixels this close to the threshold may fall either way
METADATA_KEYS = {"format", "threshold", "input_size", "normalization", "config", "weights", "seglib_version",
                 "source", "source_sha256", "dynamic_hw"}
KINDS = ["unet", "smp-unet", "mediapipe-selfie"]  # every kind exports with dynamic height and width
OTHER_SIZES = [(2, 96, 64), (1, 32, 128), (1, 448, 448), (1, 480, 416)]  # (batch, H, W) besides the exported size


def tiny_checkpoint(kind: str, path):
    """A checkpoint file of an untrained small network of each kind (MediaPipe's: its bundled weights)."""
    if kind == "unet":
        return save_tiny_checkpoint(path, input_size=SIZE)
    torch.manual_seed(0)
    if kind == "smp-unet":
        cfg = make_config("smoke", {"model": "smp-unet", "encoder": "resnet18", "encoder_weights": "none",
                                    "input_size": SIZE})
        model = build_model("smp-unet", encoder="resnet18", encoder_weights=None)
    else:
        cfg = make_config("smoke", {"model": "mediapipe-selfie", "encoder_weights": "mediapipe", "input_size": SIZE})
        model = build_model("mediapipe-selfie", encoder_weights="mediapipe")
    state = make_checkpoint(model, cfg, epoch=3, val_iou=0.6, best_val_iou=0.7)
    return save_checkpoint(state, path)


@pytest.fixture(scope="module", params=KINDS)
def exported(request, tmp_path_factory):
    """(kind, checkpoint path, ExportResult) for each model kind, exported once."""
    folder = tmp_path_factory.mktemp(request.param)
    checkpoint = tiny_checkpoint(request.param, folder / "model.pt")
    return request.param, checkpoint, export_onnx(checkpoint, folder / "model.onnx")


def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [np.asarray(draw_pair(rng, w, h)[0]) for w, h in ((64, 64), (90, 37), (120, 200), (51, 33))]


def test_export_is_valid_onnx_and_matches_pytorch(exported):
    kind, checkpoint, result = exported
    assert result.path.is_file() and result.input_size == SIZE
    assert not [p for p in result.path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    onnx.checker.check_model(str(result.path), full_check=True)
    proto = onnx.load(str(result.path))
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    assert result.dynamic_hw and result.note == "", (kind, result.note)
    expected_axes = {0: "batch", 2: "height", 3: "width"}
    assert result.dynamic_axes == {"image": expected_axes, "logits": expected_axes}
    assert 0 <= result.max_abs_diff <= result.tolerance
    # independently of export_onnx's own check: fresh inputs, other batch sizes and (when dynamic) other sizes
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint))
    network, _ = load_onnx_network(result.path)
    assert isinstance(network, OnnxNetwork)
    shapes = [(3, SIZE, SIZE), *OTHER_SIZES]
    generator = torch.Generator().manual_seed(123)
    for shape in shapes:
        x = torch.randn(*shape[:1], 3, *shape[1:], generator=generator)
        with torch.no_grad():
            expected = model(x)
        got = torch.from_numpy(network.logits(x.numpy()))
        assert got.shape == expected.shape == (shape[0], 1, *shape[1:]) and got.dtype == torch.float32
        diff = (got - expected).abs().max().item()
        assert diff <= LOGIT_ATOL + LOGIT_RTOL * expected.abs().max().item(), (kind, shape, diff)


def test_metadata_round_trips(exported):
    kind, checkpoint, result = exported
    state = load_checkpoint(checkpoint)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert METADATA_KEYS <= set(props)
    assert props["dynamic_hw"] == "true"
    _, ck = load_onnx_network(result.path)
    assert ck["format"] == FORMAT and ck["source"] == str(result.path)
    for key in ("threshold", "input_size", "normalization", "config", "weights", "epoch", "best_val_iou"):
        assert ck[key] == state[key], key
    assert ck["exported_from"] == str(checkpoint)
    assert ck["source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert ck["dynamic_hw"] is True


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_onnx_predictor_masks_equal_pytorch(exported, tta):
    kind, checkpoint, result = exported
    torch_predictor = Predictor.from_checkpoint(checkpoint, tta=tta)
    onnx_pred = Predictor.from_onnx(result.path, tta=tta)
    assert onnx_pred.input_size == SIZE and onnx_pred.threshold == torch_predictor.threshold
    assert "epoch 3" in onnx_pred.describe() or kind == "unet"
    images = photos()
    expected_all = torch_predictor.predict_proba_batch(images)
    got_all = onnx_pred.predict_proba_batch(images)
    np.testing.assert_array_equal(onnx_pred.predict_mask(images[0]), got_all[0] >= onnx_pred.threshold)
    compared = total = 0
    for image, expected, got in zip(images, expected_all, got_all, strict=True):
        assert got.shape == expected.shape == image.shape[:2]
        assert np.abs(got - expected).max() < PROB_MARGIN
        # the stored threshold, and the median probability so that both classes are present
        for threshold in (torch_predictor.threshold, float(np.median(expected))):
            clear = np.abs(expected - threshold) > PROB_MARGIN
            np.testing.assert_array_equal((got >= threshold)[clear], (expected >= threshold)[clear])
            compared, total = compared + clear.sum(), total + clear.size
    assert compared > 0.5 * total  # the comparison is not vacuous


def test_fixed_size_model_refuses_other_sizes(exported, tmp_path):
    kind, checkpoint, dynamic = exported
    assert load_onnx_network(dynamic.path)[0].fixed_hw is None
    result = export_onnx(checkpoint, tmp_path / "fixed.onnx", dynamic=False)
    assert not result.dynamic_hw and "fixed at 64" in result.note
    network, _ = load_onnx_network(result.path)
    assert network.fixed_hw == (SIZE, SIZE)
    with pytest.raises(SeglibError, match=r"fixed 64x64 input; got 96x96") as info:
        network.logits(np.zeros((1, 3, 96, 96), np.float32))
    assert str(result.path) in str(info.value) and "\n" not in str(info.value)



def test_mediapipe_export_has_its_same_padding_inside_the_convolutions(exported):
    """TensorFlow's SAME padding traces as Pad nodes; the export merges each into the Conv it feeds."""
    kind, _, result = exported
    ops = [node.op_type for node in onnx.load(str(result.path)).graph.node]
    assert "Pad" not in ops and "Conv" in ops, kind


def _pad_conv_graph(pads: list[int], value: float = 0.0, mode: str = "constant", conv_pads=(0, 0, 0, 0)):
    """x -> Pad(pads, value, mode) -> Conv 3x3 (pads `conv_pads`) -> y, with fixed random weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    amounts = numpy_helper.from_array(np.array(pads, dtype=np.int64), "pads")
    fill = numpy_helper.from_array(np.array(value, dtype=np.float32), "value")
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["padded"], mode=mode),
             helper.make_node("Conv", ["padded", "w"], ["y"], pads=list(conv_pads), strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])],
                              [weight, amounts, fill])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("pads", "value", "mode", "merged"), [
    ([0, 0, 0, 0, 0, 0, 1, 1], 0.0, "constant", True),  # SAME at stride 2: one more row and column after
    ([0, 0, 2, 1, 0, 0, 2, 1], 0.0, "constant", True),
    ([0, 0, 1, 1, 0, 0, 1, 1], 0.5, "constant", False),  # padding with a value other than 0
    ([0, 0, 1, 1, 0, 0, 1, 1], 0.0, "reflect", False),
    ([0, 1, 0, 0, 0, 0, 0, 0], 0.0, "constant", False),  # pads a channel: not a Conv's padding
])
def test_merging_pads_into_convs_keeps_the_function(pads, value, mode, merged):
    import onnxruntime as ort

    from seglib.export import merge_pads_into_convs

    before = _pad_conv_graph(pads, value, mode, conv_pads=(1, 0, 1, 0))
    model = onnx.load_from_string(before.SerializeToString())
    assert merge_pads_into_convs(model.graph) == int(merged)
    assert ("Pad" in [n.op_type for n in model.graph.node]) != merged
    if pads[1] or pads[5]:  # a channel padded: the graph is only there to be left alone
        return
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(4).standard_normal((1, 3, 9, 8)).astype(np.float32)
    outputs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
               for m in (before, model)]
    assert outputs[0].shape == outputs[1].shape
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    assert ("pads" in [t.name for t in model.graph.initializer]) != merged  # merged amounts are dropped


class SizeBakedIn(torch.nn.Module):
    """Right in PyTorch at any size, but int() freezes the traced output size at the exported one."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.conv(x)[:, :, ::2, ::2], size=(int(x.shape[2]), int(x.shape[3])))


def test_graph_that_bakes_its_size_in_is_exported_at_a_fixed_size(tmp_path, monkeypatch):
    from seglib import export

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE)
    monkeypatch.setattr(export, "model_from_checkpoint", lambda state: (SizeBakedIn().eval(),
                                                                        model_from_checkpoint(state)[1]))
    result = export_onnx(checkpoint, tmp_path / "baked.onnx")
    assert not result.dynamic_hw and result.dynamic_axes["image"] == {0: "batch"}
    assert "height/width fixed at 64" in result.note and "96x32" in result.note
    assert load_onnx_network(result.path)[0].fixed_hw == (SIZE, SIZE)


def test_rect_geometry_needs_dynamic_height_and_width(tmp_path):
    torch.manual_seed(0)
    cfg = make_config("smoke", {"input_size": SIZE, "geometry": "rect"})
    state = make_checkpoint(build_model("unet", base_channels=4, depth=2), cfg, epoch=1, val_iou=0.5,
                            best_val_iou=0.5)
    assert export_onnx(state, tmp_path / "rect.onnx").dynamic_hw
    with pytest.raises(SeglibError, match="geometry rect needs an export with dynamic height and width"):
        export_onnx(state, tmp_path / "fixed.onnx", dynamic=False)
    assert not (tmp_path / "fixed.onnx").exists()


def test_in_memory_checkpoint_and_overwrite_refusal(tmp_path):
    state = load_checkpoint(save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE))
    out = tmp_path / "out.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(SeglibError, match="already exists") as info:
        export_onnx(state, out)
    assert str(out) in str(info.value) and out.read_bytes() == b"keep me"
    result = export_onnx(state, out, overwrite=True, dynamic=False)
    assert result.path == out and not result.dynamic_hw and result.max_abs_diff <= result.tolerance
    _, ck = load_onnx_network(out)
    assert ck["exported_from"] == "(in-memory checkpoint)" and ck["source_sha256"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "tiny.pt"]


def test_bad_inputs_fail_with_one_line(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(300) + b"not a model")
    plain = tmp_path / "plain.onnx"  # a valid ONNX model that seglib did not export
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(plain))
    bad_checkpoint = tmp_path / "bad.pt"
    bad_checkpoint.write_bytes(b"\x00garbage")
    cases = [
        (lambda: load_onnx_network(garbage), SeglibError, garbage),
        (lambda: load_onnx_network(plain), SeglibError, plain),
        (lambda: load_onnx_network(tmp_path / "missing.onnx"), SeglibError, tmp_path / "missing.onnx"),
        (lambda: Predictor.from_onnx(garbage), SeglibError, garbage),
        (lambda: export_onnx(tmp_path / "missing.pt", tmp_path / "a.onnx"), CheckpointError, tmp_path / "missing.pt"),
        (lambda: export_onnx(bad_checkpoint, tmp_path / "b.onnx"), CheckpointError, bad_checkpoint),
    ]
    for call, kind, path in cases:
        with pytest.raises(kind) as info:
            call()
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_threads(exported):
    _, _, result = exported
    network, _ = load_onnx_network(result.path)
    assert network.session.get_session_options().intra_op_num_threads == os.cpu_count()
    one, _ = load_onnx_network(result.path, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert network.single_threaded().session.get_session_options().intra_op_num_threads == 1


# ------------------------------------------------- refused weights, outputs and ONNX files (issue 21, case 10)


def _unet_state(scale: float = 1.0, poison: float | None = None) -> dict:
    """An in-memory checkpoint of a tiny U-Net: its conv weights times `scale`, one weight set to `poison`."""
    torch.manual_seed(0)
    model = build_model("unet", base_channels=4, depth=2)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 4:
                p.mul_(scale)
        if poison is not None:
            model.outc.conv.weight.view(-1)[0] = poison
    return make_checkpoint(model, make_config("smoke", {"input_size": SIZE}), epoch=1, val_iou=0.5,
                           best_val_iou=0.5)


def test_export_refuses_nan_weights_and_writes_nothing(tmp_path, capsys):
    from seglib.cli import main

    state = _unet_state(poison=float("nan"))
    with pytest.raises(CheckpointError, match=r"field 'model_state' holds non-finite weights .* 'outc.conv.weight'"):
        export_onnx(state, tmp_path / "a.onnx")
    path = save_checkpoint(state, tmp_path / "diverged.pt")
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: field 'model_state' holds non-finite weights" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pt"]


def test_export_refuses_finite_weights_whose_logits_are_not_finite(tmp_path):
    state = _unet_state(scale=1e12)  # finite weights, but activations overflow float32: NaN logits
    with pytest.raises(SeglibError, match=r"PyTorch's logits .* are not finite \(NaN or inf\)") as info:
        export_onnx(state, tmp_path / "a.onnx")
    assert "\n" not in str(info.value) and "largest difference" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_export_out_under_a_file_is_one_line_and_names_the_option(tmp_path, capsys):
    from seglib.cli import main

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE)
    (tmp_path / "notes.txt").write_text("mine\n")
    for out in ("notes.txt/model.onnx", "notes.txt/sub/model.onnx"):
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"seglib: error: {tmp_path / out}: cannot be written there") and err.count("\n") == 1
        assert "notes.txt" in err and "is a file, not a folder" in err and "Traceback" not in err
    with pytest.raises(SeglibError, match="cannot be written there"):
        export_onnx(checkpoint, tmp_path / "notes.txt" / "model.onnx")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    (tmp_path / "model.onnx").write_bytes(b"keep me")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "overwrite=True" not in err
    assert (tmp_path / "model.onnx").read_bytes() == b"keep me"


def _edited_onnx(source, out, *, props: dict | None = None, rename_input: str | None = None,
                 poison: bool = False):
    """A copy of a seglib ONNX export with metadata values replaced, its input renamed or a weight set to NaN."""
    from onnx import numpy_helper

    proto = onnx.load(str(source))
    for p in proto.metadata_props:
        if props and p.key in props:
            p.value = props[p.key]
    if rename_input:
        for node in proto.graph.node:
            node.input[:] = [rename_input if i == "image" else i for i in node.input]
        proto.graph.input[0].name = rename_input
    if poison:
        tensor = next(t for t in proto.graph.initializer if numpy_helper.to_array(t).dtype == np.float32)
        array = numpy_helper.to_array(tensor).copy()
        array.flat[0] = np.nan
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unet-onnx")
    return export_onnx(save_tiny_checkpoint(folder / "tiny.pt", input_size=SIZE), folder / "model.onnx").path


@pytest.mark.parametrize(("edit", "says"), [
    (dict(rename_input="input"), "graph input name is 'input', expected one input named 'image'"),
    (dict(props={"input_size": "0"}), "field 'input_size' is 0, expected a positive whole number"),
    (dict(props={"input_size": "big"}), "field 'input_size' is 'big' (text), expected a positive whole number"),
    (dict(props={"input_size": "66"}), "field 'input_size' is 66, expected a positive multiple of 4"),
    (dict(props={"threshold": "1.5"}), "field 'threshold' is 1.5, expected a number between 0 and 1"),
    (dict(props={"threshold": "nan"}), "field 'threshold' is nan"),
    (dict(props={"config": "{not json"}), "field 'config' is '{not json' (text), expected a table"),
    (dict(props={"normalization": '{"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}'}),
     "field 'normalization' is mean [0.5, 0.5, 0.5]"),
    (dict(props={"seglib_version": "99.0.0"}), "written by seglib 99.0.0, newer than this seglib"),
    (dict(props={"format": "seglib-onnx/7"}), "format 'seglib-onnx/7' is newer than this seglib"),
    (dict(poison=True), "holds non-finite values (NaN or inf)"),
])
def test_a_bad_onnx_file_is_refused_with_one_line_naming_the_file_and_the_field(unet_onnx, tmp_path, capsys,
                                                                                edit, says):
    from PIL import Image

    from seglib.cli import main

    bad = _edited_onnx(unet_onnx, tmp_path / "bad.onnx", **edit)
    with pytest.raises(SeglibError) as info:
        load_onnx_network(bad)
    assert str(info.value).startswith(f"{bad}: ") and says in str(info.value) and "\n" not in str(info.value)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (90, 60, 30)).save(photo)
    assert main(["predict", "--onnx", str(bad), str(photo), "--out", str(tmp_path / "masks"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"seglib: error: {info.value}\n" and not (tmp_path / "masks").exists()


def test_an_onnx_file_whose_fixed_input_differs_from_its_input_size_is_refused(unet_onnx, tmp_path):
    fixed = export_onnx(save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE), tmp_path / "fixed.onnx",
                        dynamic=False).path
    bad = _edited_onnx(fixed, tmp_path / "bad.onnx", props={"input_size": "32"})
    with pytest.raises(CheckpointError, match=r"field 'input_size' is 32, but the graph's input is fixed at 64x64"):
        load_onnx_network(bad)


# ------------------------------------------------------------- one writer per --out, fenced folders (issue 35)


def test_export_into_an_out_in_use_is_refused_at_once_naming_the_holder(tmp_path, capsys):
    from seglib.cli import main
    from seglib.infra import locks

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE)
    out = tmp_path / "new" / "model.onnx"
    with locks.exclusive(out.resolve(), str(out)):  # another `seglib export --out` writing it
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: in use by pid {os.getpid()}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]


def test_export_never_writes_into_a_data_folder(tmp_path, capsys, monkeypatch):
    """Case 10: `export --out` inside a folder seglib reads data from is refused with one line, nothing written;
    beside the checkpoint is where exports usually go, and is fine."""
    from seglib.cli import main

    monkeypatch.setenv("SEGLIB_DATA_DIR", str(tmp_path / "raw"))
    (tmp_path / "raw").mkdir()
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", input_size=SIZE)
    out = tmp_path / "raw" / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"seglib: error: {out}: ") and "refusing to write there" in err
    assert list((tmp_path / "raw").iterdir()) == []
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "tiny.onnx")]) == 0
