"""ONNX export of trained checkpoints (verified against PyTorch) and an ONNX Runtime model to predict with.

An exported file's seglib metadata is checked on load against the same schema as a checkpoint (`seglib.schema`),
and its graph against what seglib feeds it (input "image" N x 3 x H x W, output "logits", finite weights)."""

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
from seglib.checkpoint import load_checkpoint, model_from_checkpoint
from seglib.errors import CheckpointError, SeglibError, first_line
from seglib.io import atomic_path, check_writable_dir
from seglib.schema import ONNX_FORMAT, decode_onnx_metadata, validate_checkpoint
from seglib.settings import input_multiple

FORMAT = ONNX_FORMAT  # metadata_props["format"] of every file export_onnx writes
IN_MEMORY = "(in-memory checkpoint)"
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
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
        from seglib.predict.protocol import val_protocol

        chosen = val_protocol(source, state)
        if chosen.chosen_on_val:
            metadata["protocol"] = json.dumps({"threshold": chosen.threshold, "tta": chosen.tta,
                                               "source": chosen.source})
    square = (2, size, size)
    data = _to_onnx(model, example, opset, dynamic_hw=dynamic, metadata=metadata)
    session = _session(data, threads=None, providers=["CPUExecutionProvider"])
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
            session = _session(data, threads=None, providers=["CPUExecutionProvider"])
            max_diff, max_logit = _compare(model, session, [square])
    else:
        note = f"height/width fixed at {size} (dynamic=False)"
    if cfg.geometry == "rect" and not dynamic:  # its inputs are as wide and tall as each photo's aspect makes them
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
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = dict(metadata, dynamic_hw="true" if dynamic_hw else "false")
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"seglib {seglib.__version__}: {metadata['weights']}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise SeglibError(f"exported ONNX model fails onnx.checker ({str(exc).splitlines()[0][:200]})") from None
    return proto.SerializeToString()


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


def _session(data: bytes, *, threads: int | None, providers: list[str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    # no busy-waiting between calls: spinning threads competed with pre- and post-processing on a 2-core machine
    # (times per photo then varied widely from run to run: reports/bench)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(data, options, providers=providers)


class OnnxModel(nn.Module):
    """An exported model run by onnxruntime, usable where seglib expects a torch model: `model(batch)` takes an
    (N,3,H,W) float tensor and returns (N,1,H,W) logits as a torch tensor on the batch's device.

    `threads`: onnxruntime intra-op threads (default os.cpu_count()). CPU by default; `.to("cuda")` needs
    onnxruntime's CUDAExecutionProvider.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, data: bytes | None = None):
        super().__init__()
        self.path = Path(path)
        self.threads = threads
        if data is None and not self.path.is_file():
            raise SeglibError(f"{self.path}: ONNX model not found")
        self._data = self.path.read_bytes() if data is None else data
        self.provider = "CPUExecutionProvider"
        try:
            self.session = _session(self._data, threads=threads, providers=[self.provider])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise SeglibError(f"{self.path}: onnxruntime cannot load it ({first_line(exc, 200)})") from None
        self.fixed_hw = check_graph(self.session, self.path)

    def to(self, device=None, dtype=None, non_blocking: bool = False) -> OnnxModel:
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        if dtype is not None and dtype != torch.float32:
            raise SeglibError(f"{self.path}: the ONNX model runs in float32 only, not {dtype}")
        if device is None:
            return self
        try:
            kind = torch.device(device).type
        except (RuntimeError, TypeError):
            raise SeglibError(f"{self.path}: device {device!r} unknown (cpu or cuda)") from None
        if kind == "cpu":
            provider = "CPUExecutionProvider"
        elif kind == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SeglibError(f"{self.path}: onnxruntime here has no CUDAExecutionProvider (install "
                                  "onnxruntime-gpu) -- use device cpu")
            provider = "CUDAExecutionProvider"
        else:
            raise SeglibError(f"{self.path}: device {device!r} is not supported by the ONNX backend (cpu or cuda)")
        if provider != self.provider:
            self.session = _session(self._data, threads=self.threads, providers=[provider])
            self.provider = provider
        return self

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise SeglibError(f"{self.path}: expects an (N,3,H,W) batch, got {tuple(batch.shape)}")
        if self.fixed_hw is not None and tuple(batch.shape[2:]) != self.fixed_hw:
            h, w = self.fixed_hw
            raise SeglibError(f"{self.path}: exported with a fixed {h}x{w} input; got {batch.shape[2]}x"
                              f"{batch.shape[3]} (letterbox to the model's input_size first)")
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise SeglibError(f"{self.path}: onnxruntime failed on an input of {x.shape[0]}x3x{x.shape[2]}x"
                              f"{x.shape[3]} ({first_line(exc, 160)})") from None
        return torch.from_numpy(logits).to(batch.device)


def check_graph(session, path: Path) -> tuple[int, int] | None:
    """The graph takes what seglib feeds it: one input "image" of shape (N, 3, H, W) and an output "logits";
    returns its fixed (H, W), or None when they are dynamic. One-line CheckpointError naming what differs."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [i.name for i in inputs]
    if names != [INPUT_NAME]:
        raise CheckpointError(f"{path}: graph input name is {', '.join(map(repr, names)) or 'missing'}, expected one "
                              f"input named {INPUT_NAME!r} (N x 3 x H x W); export it with `seglib export`")
    if OUTPUT_NAME not in [o.name for o in outputs]:
        raise CheckpointError(f"{path}: graph output names are {', '.join(repr(o.name) for o in outputs)}, expected "
                              f"one named {OUTPUT_NAME!r}; export it with `seglib export`")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise CheckpointError(f"{path}: graph input {INPUT_NAME!r} has shape {shape}, expected N x 3 x H x W")
    if not all(isinstance(d, int) for d in shape[2:]):
        return None
    if min(shape[2:]) <= 0:
        raise CheckpointError(f"{path}: graph input {INPUT_NAME!r} has shape {shape}: height and width must be "
                              "positive")
    return shape[2], shape[3]


def check_finite_initializers(proto, path: Path) -> None:
    """The graph's stored weights (initializers and constants) are finite: NaN weights give NaN logits."""
    from onnx import numpy_helper

    tensors = list(proto.graph.initializer)
    tensors += [a.t for node in proto.graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value"]
    for tensor in tensors:
        array = numpy_helper.to_array(tensor)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise CheckpointError(f"{path}: weight {tensor.name or '(constant)'!r} holds non-finite values (NaN or "
                                  "inf); the model it was exported from diverged? export a good checkpoint")


def read_metadata(path: str | os.PathLike, data: bytes | None = None) -> dict[str, str]:
    """The metadata_props of a seglib ONNX file; one-line SeglibError for anything else."""
    import onnx

    path = Path(path)
    if data is None:
        if not path.is_file():
            raise SeglibError(f"{path}: ONNX model not found")
        data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise SeglibError(f"{path}: not an ONNX model ({first_line(exc, 200)})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if not props.get("format", "").startswith(FORMAT.rpartition("/")[0] + "/") or not proto.graph.node:
        raise SeglibError(f"{path}: not an ONNX model exported by seglib (no {FORMAT} metadata; "
                          "export it with seglib.export.export_onnx)")
    check_finite_initializers(proto, path)
    return props


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> tuple[OnnxModel, dict]:
    """(OnnxModel, checkpoint-like dict) for `seglib.predict.Predictor(model, cfg, checkpoint_like, ...)`."""
    path = Path(path)
    if not path.is_file():
        raise SeglibError(f"{path}: ONNX model not found")
    data = path.read_bytes()
    props = read_metadata(path, data)
    meta = decode_onnx_metadata(props, str(path))  # the checkpoint schema: fields, types, ranges, versions
    checkpoint = {
        "format": meta["format"],
        "threshold": float(meta["threshold"]),
        "input_size": int(meta["input_size"]),
        "normalization": meta["normalization"],
        "config": meta["config"],
        "weights": meta.get("weights", ""),
        "source": str(path),
        "exported_from": meta.get("source", ""),
        "source_sha256": meta.get("source_sha256", ""),
        "seglib_version": meta["seglib_version"],
        "dynamic_hw": meta.get("dynamic_hw") == "true",
    }
    checkpoint["protocol"] = _protocol(props.get("protocol"))
    for key in ("epoch", "best_val_iou"):  # Predictor.describe shows them when present
        if meta.get(key) is not None:
            checkpoint[key] = meta[key]
    model = OnnxModel(path, threads=threads, data=data)
    size = checkpoint["input_size"]
    if model.fixed_hw is not None and model.fixed_hw != (size, size):
        raise CheckpointError(f"{path}: field 'input_size' is {size}, but the graph's input is fixed at "
                              f"{model.fixed_hw[0]}x{model.fixed_hw[1]}")
    return model, checkpoint


def _protocol(text: str | None) -> dict | None:
    """The val-chosen threshold and TTA an export recorded ({threshold, tta, source}); None when absent or odd."""
    try:
        value = json.loads(text) if text else None
        ok = isinstance(value, dict) and 0.0 < float(value["threshold"]) < 1.0
    except (ValueError, TypeError, KeyError):
        return None
    return {"threshold": float(value["threshold"]), "tta": bool(value.get("tta")),
            "source": str(value.get("source", ""))} if ok else None

