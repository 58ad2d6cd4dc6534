"""The same checks over every registered model (smp's `BaseModelTester`), each built small from scratch: forward and
backward at two multiples of its stride and on a rectangle, its declared stride measured on its feature maps, a
size off the stride refused naming it, a checkpoint round trip that needs no outside file, ONNX export agreeing
with PyTorch. And the registry is the one list of models and strides."""

from __future__ import annotations

import ast
import inspect
import math
import typing

import pytest
import torch

from seglib import settings
from seglib.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_checkpoint
from seglib.export import LOGIT_ATOL, LOGIT_RTOL, export_onnx
from seglib.infra.errors import ConfigError
from seglib.infra.paths import PROJECT_ROOT
from seglib.models import model as model_module
from seglib.models.model import model_for
from seglib.models.model_registry import MODEL_REGISTRY, check_input_size, model_entry
from seglib.onnx_session import load_onnx_network
from seglib.profiles import make_config
from seglib.settings import TrainConfig, input_multiple

SMALLEST_SIDE = 64  # and at least two strides: the deepest feature map is 2x2 or larger


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is many times faster than two on a shared 2-core CPU (test_model.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=list(MODEL_REGISTRY))
def built(request):
    """(config, model, (a, b)) of each registered model: its small settings, from scratch, and two input sides
    that are successive multiples of its stride, from SMALLEST_SIDE."""
    entry = model_entry(request.param)
    stride = entry.stride_for(TrainConfig(model=entry.name, **entry.small))
    side = stride * max(2, math.ceil(SMALLEST_SIDE / stride))
    cfg = make_config("smoke", {"model": entry.name, "encoder_weights": "none", **entry.small, "input_size": side})
    torch.manual_seed(0)
    return cfg, model_for(cfg), (side, side + stride)


def test_forward_and_backward_at_two_stride_multiples(built):
    cfg, model, sides = built
    model.train()
    for side in sides:
        model.zero_grad()
        logits = model(torch.randn(2, 3, side, side))
        assert logits.shape == (2, 1, side, side)
        logits.mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), cfg.model


def test_a_rectangle_of_stride_multiples(built):
    cfg, model, (a, b) = built
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, a, b)).shape == (1, 1, a, b)
        assert model(torch.randn(1, 3, b, a)).shape == (1, 1, b, a)


def _feature_ratios(model, height: int, width: int) -> list[tuple[float, float]]:
    """input side / feature-map side, per axis, of every 4-D tensor a module returns (global 1x1 pools left out)."""
    ratios = []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2:] != (1, 1):
            ratios.append((height / output.shape[-2], width / output.shape[-1]))

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return ratios


def _aligned(ratio: tuple[float, float]) -> bool:
    return ratio[0] == ratio[1] and ratio[0].is_integer() and int(ratio[0]) & (int(ratio[0]) - 1) == 0


def test_the_declared_stride_is_the_networks_own(built):
    """At multiples of the stride every feature map is the input shrunk by a power of two, the deepest by the stride;
    half a stride off, some map is not (its rows and columns no longer line up with the input's), or the network
    cannot add its branches at all."""
    cfg, model, (a, b) = built
    stride = input_multiple(cfg)
    ratios = _feature_ratios(model, a, b)
    assert all(_aligned(r) for r in ratios), (cfg.model, sorted(set(ratios)))
    assert max(r[0] for r in ratios) == stride
    try:
        off_stride = _feature_ratios(model, a + stride // 2, a)
    except RuntimeError:  # e.g. MediaPipe's graph: branches of different sizes cannot be added
        return
    assert not all(_aligned(r) for r in off_stride), cfg.model


def test_a_size_off_the_stride_is_refused_naming_it(built):
    cfg, _, (a, _) = built
    stride = input_multiple(cfg)
    off = a + stride // 2
    with pytest.raises(ConfigError, match=rf"^input {off}x{a}: height and width must be multiples of {stride} "):
        check_input_size(cfg, off, a)
    check_input_size(cfg, a, a + stride)
    with pytest.raises(ConfigError, match=rf"^setting input_size={off}: must be a multiple of {stride} \({cfg.model}"):
        settings.validate(cfg.replace(input_size=off))


def _no_outside_files(monkeypatch, tmp_path):
    """The bundled .tflite unreadable and every download refused, as on a machine with neither."""
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint rebuild tried to download weights")

    monkeypatch.setattr(model_module, "MEDIAPIPE_SELFIE_TFLITE", tmp_path / "missing.tflite")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_checkpoint_round_trip_needs_no_outside_file(built, tmp_path, monkeypatch):
    cfg, model, (a, b) = built
    path = save_checkpoint(make_checkpoint(model, cfg, epoch=1, val_iou=0.5, best_val_iou=0.5), tmp_path / "m.pt")
    _no_outside_files(monkeypatch, tmp_path)
    state = load_checkpoint(path)
    assert state["config"]["config_schema"] == settings.CONFIG_SCHEMA
    assert state["weights"] == "random initialisation (trained from scratch)"
    assert (state["model_spec"] is not None) == model_entry(cfg.model).saves_graph
    rebuilt, saved_cfg = model_from_checkpoint(state)
    assert saved_cfg == cfg
    x = torch.randn(2, 3, a, b)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))


def test_onnx_export_agrees_with_pytorch(built, tmp_path):
    cfg, model, (a, b) = built
    state = make_checkpoint(model, cfg, epoch=1, val_iou=0.5, best_val_iou=0.5)
    result = export_onnx(state, tmp_path / "m.onnx")
    assert result.dynamic_hw and result.max_abs_diff <= result.tolerance, (cfg.model, result.note)
    network, _ = load_onnx_network(result.path)
    x = torch.randn(1, 3, b, a)
    with torch.no_grad():
        expected = model.eval()(x)
    diff = (torch.from_numpy(network.logits(x.numpy())) - expected).abs().max().item()
    assert diff <= LOGIT_ATOL + LOGIT_RTOL * expected.abs().max().item(), (cfg.model, diff)


# ------------------------------------------------------------------ the registry is the one list of models


def test_settings_take_the_models_and_strides_from_the_registry():
    assert settings.MODELS == tuple(MODEL_REGISTRY) == typing.get_args(settings.HINTS["model"])
    for name, entry in MODEL_REGISTRY.items():
        for depth in (2, 4, 5):
            cfg = TrainConfig(model=name, depth=depth)
            assert input_multiple(cfg) == entry.stride_for(cfg)
    assert [input_multiple(TrainConfig(model="unet", depth=d)) for d in (2, 4, 5)] == [4, 16, 32]


@pytest.mark.parametrize("name", list(MODEL_REGISTRY))
def test_an_entry_declares_what_its_builder_takes(name):
    """The builder's keyword arguments are the entry's settings (and `spec` when the checkpoint saves the graph),
    annotated with the types TrainConfig gives them; it starts from scratch offline; its words are one line."""
    entry = model_entry(name)
    hints = typing.get_type_hints(TrainConfig)
    parameters = inspect.signature(entry.builder_function()).parameters
    expected = set(entry.settings) | ({"spec"} if entry.saves_graph else set())
    assert set(parameters) == expected
    assert all(parameters[s].annotation in (hints[s], hints[s].__name__) for s in entry.settings)
    assert set(entry.small) <= set(hints) and entry.starting_weights("none").option == "none"
    assert "\n" not in entry.summary + entry.describe(TrainConfig(model=name))


def test_no_other_module_keys_on_a_model_name():
    """Only seglib/models/model_registry.py compares a model's name or maps one to something."""
    found = []
    for path in sorted((PROJECT_ROOT / "seglib").rglob("*.py")):
        if path.name == "model_registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):
                parts = [k for k in node.keys if k is not None]
            else:
                continue
            names = [c.value for part in parts for c in ast.walk(part) if isinstance(c, ast.Constant)]
            if any(n in MODEL_REGISTRY for n in names if isinstance(n, str)):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert found == []
