"""ONNX export of trained checkpoints, verified against PyTorch. `seglib.onnx_session` loads an export to predict
with (`load_onnx_network`, what `Predictor.from_onnx` uses) and checks its metadata and graph."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import seglib
from seglib.checkpoint import load_checkpoint, model_from_checkpoint, validate_checkpoint
from seglib.infra.errors import SeglibError, first_line
from seglib.infra.io import atomic_path, check_writable_dir
from seglib.onnx_session import INPUT_NAME, OUTPUT_NAME, make_session
from seglib.schema import ONNX_FORMAT
from seglib.settings import RECT, input_multiple

FORMAT = ONNX_FORMAT  # metadata_props["format"] of every file export_onnx writes
IN_MEMORY = "(in-memory checkpoint)"
OPSET = 17
# Export is verified on logits: |onnxruntime - PyTorch| <= LOGIT_ATOL + LOGIT_RTOL * (largest |logit| seen).
# Both run float32 but sum each convolution in a different order (MLAS vs oneDNN), so after dozens of layers
# differences of tens of float32 ulps (eps 1.2e-7) of the largest activations are normal: MediaPipe's network
# gives logits near +-1000 on random inputs, where 1e-5 relative is about 80 ulps. The absolute floor 1e-3 bounds the probability error by 2.5e-4 (sigmoid slope <= 1/4).
# A broken export (wrong padding, resize or layer) is off by a sizeable fraction of the logits themselves.
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-5
VERIFY_SEED = 0


class NonFiniteLogits(SeglibError):
    """The model's logits hold NaN or inf: nothing can be verified, and its masks would be meaningless."""


@dataclass
class ExportResult:
    """What export_onnx wrote and how closely the ONNX model reproduced PyTorch's logits."""

    path: Path
    input_size: int
    dynamic_axes: dict[str, dict[int, str]]  # input/output name -> {axis: symbolic name}
    dynamic_hw: bool  # False: height and width are fixed at input_size (batch is always dynamic)
    max_abs_diff: float  # largest |onnxruntime - PyTorch| over all verification inputs (logits)
    tolerance: float  # LOGIT_ATOL + LOGIT_RTOL * largest |logit|; max_abs_diff never exceeds it
    checked_shapes: list[tuple[int, ...]] = field(default_factory=list)
    note: str = ""  # why H/W were fixed, when they were


def export_onnx(checkpoint_path_or_state: str | os.PathLike | dict, out_path: str | os.PathLike, *,
                opset: int = OPSET, dynamic: bool = True, overwrite: bool = False) -> ExportResult:
    """Export a seglib checkpoint (file or loaded dict) to ONNX, verified against PyTorch; written atomically.

    Input "image" (N,3,H,W float32, normalised as the checkpoint says), output "logits" (N,1,H,W). The batch is
    always dynamic; with `dynamic` H and W are too when the network's exported graph proves correct at a
    second size, else they are fixed at the checkpoint's input_size (ExportResult.note says why).
    """
    out_path = Path(out_path)
    check_out_path(out_path, overwrite, hint="pass overwrite=True")
    if isinstance(checkpoint_path_or_state, dict):
        state, source, source_sha = checkpoint_path_or_state, IN_MEMORY, ""
        validate_checkpoint(state, IN_MEMORY)  # what load_checkpoint checks of a file
    else:
        state = load_checkpoint(checkpoint_path_or_state)
        source = str(checkpoint_path_or_state)
        source_sha = hashlib.sha256(Path(checkpoint_path_or_state).read_bytes()).hexdigest()
    model, cfg = model_from_checkpoint(state)
    size = int(state["input_size"])
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(VERIFY_SEED))
    metadata = {
        "format": FORMAT,
        "threshold": repr(float(state["threshold"])),
        "input_size": str(size),
        "normalization": json.dumps(state["normalization"]),
        "config": json.dumps(cfg.to_saved_dict()),
        "weights": str(state.get("weights", "")),
        "seglib_version": seglib.__version__,
        "torch_version": str(torch.__version__),
        "source": source,
        "source_sha256": source_sha,
        "epoch": json.dumps(state.get("epoch")),
        "best_val_iou": json.dumps(state.get("best_val_iou")),
    }
    if source != IN_MEMORY:  # the threshold and TTA chosen on val travel with the model (predict's default)
        from seglib.predict.val_choice import val_protocol

        chosen = val_protocol(source, state)
        if chosen.chosen_on_val:
            metadata["protocol"] = json.dumps({"threshold": chosen.threshold, "tta": chosen.tta,
                                               "source": chosen.source, "inference": chosen.inference.record(),
                                               "refine": chosen.inference.refine})
    square = (2, size, size)
    data = _to_onnx(model, example, opset, dynamic_hw=dynamic, metadata=metadata)
    session = make_session(data, threads=None, providers=["CPUExecutionProvider"])
    max_diff, max_logit = _compare(model, session, [square])
    _tolerance(max_diff, max_logit, [square])  # wrong at the traced size itself: a real failure, raise
    shapes, note = [square], ""
    if dynamic:
        stride = input_multiple(cfg)  # a second size it must take: non-square, sides multiples of its stride
        step = stride * max(1, 32 // stride)  # and well apart from the first (32 px unless the stride is larger)
        other = (1, size + step, max(step, size - step))
        try:
            diff, logit = _compare(model, session, [other])
            _tolerance(diff, logit, [other])
            shapes.append(other)
            max_diff, max_logit = max(max_diff, diff), max(max_logit, logit)
        except NonFiniteLogits:
            raise
        except SeglibError as exc:  # the traced graph baked the size in somewhere: export at input_size
            note = f"height/width fixed at {size}: with dynamic H/W the graph fails at {other[1]}x{other[2]} ({exc})"
            dynamic = False
            data = _to_onnx(model, example, opset, dynamic_hw=False, metadata=metadata)
            session = make_session(data, threads=None, providers=["CPUExecutionProvider"])
            max_diff, max_logit = _compare(model, session, [square])
    else:
        note = f"height/width fixed at {size} (dynamic=False)"
    if cfg.geometry == RECT and not dynamic:  # its inputs are as wide and tall as each photo's aspect makes them
        raise SeglibError(f"{source}: geometry rect needs an export with dynamic height and width; {note}")
    tolerance = _tolerance(max_diff, max_logit, shapes)
    try:
        with atomic_path(out_path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise SeglibError(f"{out_path}: could not be written ({exc.strerror or exc})") from None
    return ExportResult(path=out_path, input_size=size, dynamic_axes=_dynamic_axes(dynamic), dynamic_hw=dynamic,
                        max_abs_diff=max_diff, tolerance=tolerance, checked_shapes=shapes, note=note)


def check_out_path(out_path: Path, overwrite: bool, hint: str) -> None:
    """Refuse, before any work, an output that is a folder, lies under a file, or exists (unless `overwrite`;
    `hint` says how to allow that: the option of the caller's interface)."""
    if out_path.is_dir():
        raise SeglibError(f"{out_path}: is a folder; give the .onnx file to write")
    if out_path.exists() and not overwrite:
        raise SeglibError(f"{out_path}: already exists; refusing to overwrite it ({hint} to replace it)")
    try:
        check_writable_dir(out_path.parent)
    except SeglibError as exc:
        raise SeglibError(f"{out_path}: cannot be written there ({exc})") from None


def _dynamic_axes(dynamic_hw: bool) -> dict[str, dict[int, str]]:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    return {INPUT_NAME: dict(axes), OUTPUT_NAME: dict(axes)}


def _to_onnx(model: nn.Module, example: torch.Tensor, opset: int, *, dynamic_hw: bool, metadata: dict) -> bytes:
    """Trace with the TorchScript-based exporter (no onnxscript needed), add metadata, check; the file's bytes."""
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the legacy-exporter deprecation notice and tracer warnings on shape checks
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=_dynamic_axes(dynamic_hw),
                          do_constant_folding=True)
    proto = simplify_graph(onnx.load_from_string(buffer.getvalue()))
    metadata = dict(metadata, dynamic_hw="true" if dynamic_hw else "false")
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"seglib {seglib.__version__}: {metadata['weights']}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise SeglibError(f"exported ONNX model fails onnx.checker ({str(exc).splitlines()[0][:200]})") from None
    return proto.SerializeToString()


def simplify_graph(proto):
    """The traced graph with its constant sub-expressions folded (ONNX Runtime's basic level, which only rewrites
    standard ONNX operators and depends on no hardware) and every zero `Pad` that feeds a `Conv` merged into the
    convolution's own `pads`: the padding of TensorFlow's SAME convolutions (MediaPipe's network) then no longer
    breaks ONNX Runtime's blocked memory layout, which takes time on every photo (reports/bench/folder.md).
    The result computes the same function; `export_onnx` verifies it against PyTorch like any export. A graph
    the basic level cannot rewrite to standard operators is kept as traced."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="seglib-export-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        options.log_severity_level = 3
        try:
            ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            folded = onnx.load(options.optimized_model_filepath)
        except Exception:  # noqa: BLE001 - the traced graph still works; only its speed is at stake
            return proto
    if any(node.domain not in ("", "ai.onnx") for node in folded.graph.node):
        return proto
    merge_pads_into_convs(folded.graph)
    del folded.opset_import[:]  # ONNX Runtime lists its own domains too; the graph uses the traced ones only
    folded.opset_import.extend(proto.opset_import)
    return folded


def merge_pads_into_convs(graph) -> int:
    """Remove each `Pad` (constant mode, value 0, constant pads on height and width only) whose one consumer is
    a `Conv` with explicit pads, adding its amounts to the Conv's `pads`; returns how many were merged."""
    from onnx import helper, numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    merged = 0
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in pad.attribute}
        users = consumers.get(pad.output[0], [])
        amounts = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        if (attrs.get("mode", b"constant") not in (b"constant", "constant") or amounts is None or value is None
                or np.any(value != 0) or len(pad.input) > 3 or len(users) != 1 or users[0].op_type != "Conv"
                or pad.output[0] in outputs or amounts.shape != (8,)):
            continue
        amounts = amounts.astype(int).tolist()  # (N, C, H, W) begins, then ends
        conv = users[0]
        conv_attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if (min(amounts) < 0 or any(amounts[i] for i in (0, 1, 4, 5))
                or conv_attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            continue
        top, left, bottom, right = conv_attrs.get("pads", [0, 0, 0, 0])
        pads = [top + amounts[2], left + amounts[3], bottom + amounts[6], right + amounts[7]]
        for attr in [a for a in conv.attribute if a.name == "pads"]:
            conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", pads))
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        merged += 1
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:  # the merged Pads' amounts
        graph.initializer.remove(tensor)
    return merged


@torch.inference_mode()
def _compare(model: nn.Module, session, shapes: list[tuple[int, int, int]]) -> tuple[float, float]:
    """Run onnxruntime and PyTorch on random normalised (N,3,H,W) inputs: (max |diff|, max |logit|)."""
    generator = torch.Generator().manual_seed(VERIFY_SEED + 1)
    max_diff, max_logit = 0.0, 0.0
    for n, h, w in shapes:
        x = torch.randn(n, 3, h, w, generator=generator)
        expected = model(x).float().numpy()
        if not np.isfinite(expected).all():  # NaN would pass every comparison below (max() skips it)
            raise NonFiniteLogits(f"PyTorch's logits for a random input {n}x3x{h}x{w} are not finite (NaN or inf): "
                                  "the weights are unusable (the training diverged?); nothing written")
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise SeglibError(f"onnxruntime failed on input {n}x3x{h}x{w} ({first_line(exc, 200)})") from None
        if got.shape != expected.shape:
            raise SeglibError(f"onnxruntime gave logits {got.shape} for input {n}x3x{h}x{w}, PyTorch {expected.shape}")
        if not np.isfinite(got).all():
            raise NonFiniteLogits(f"onnxruntime's logits for a random input {n}x3x{h}x{w} are not finite (NaN or "
                                  "inf) while PyTorch's are; nothing written")
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
        max_logit = max(max_logit, float(np.abs(expected).max()))
    return max_diff, max_logit


def _tolerance(max_diff: float, max_logit: float, shapes: list) -> float:
    """The logit tolerance for these outputs; SeglibError when the difference exceeds it."""
    tolerance = LOGIT_ATOL + LOGIT_RTOL * max_logit
    if not max_diff <= tolerance:
        raise SeglibError(f"ONNX logits differ from PyTorch's by {max_diff:.3g} (tolerance {tolerance:.3g}) "
                          f"on inputs {shapes}")
    return tolerance
