"""ONNX Runtime sessions for seglib's exported models, with NumPy alone (no torch, no onnx package unless the
weights are checked): what `seglib predict` needs to start in a fraction of a second.

An exported file's seglib metadata is checked on load against the same schema as a checkpoint (`seglib.schema`),
and its graph against what seglib feeds it (input "image" N x 3 x H x W, output "logits"); `read_metadata` also
checks that the stored weights are finite (it parses the file with the onnx package).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from seglib.infra.errors import CheckpointError, SeglibError, first_line
from seglib.schema import BY_NAME, ONNX_FORMAT, refuse, shown, validate_stored

INPUT_NAME, OUTPUT_NAME = "image", "logits"


def make_session(data: bytes, *, threads: int | None, providers: list[str]):
    """An InferenceSession of the model bytes: `threads` intra-op threads (all cores when None), no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    # no busy-waiting between calls: spinning threads competed with pre- and post-processing on a 2-core machine
    # (times per photo then varied widely from run to run: reports/bench)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(data, options, providers=providers)


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
    check_format(props, path)
    if not proto.graph.node:
        raise SeglibError(f"{path}: an ONNX model without a graph")
    check_finite_initializers(proto, path)
    return props


class OnnxNetwork:
    """An exported model in ONNX Runtime on the CPU, as `seglib.predict.Predictor` calls a network:
    `network(batch, tta)` takes an (N,3,H,W) float32 array and returns (N,H,W) foreground probabilities, the
    mirror images' flipped back and averaged in when `tta` (one call of the session for both)."""

    device = "cpu"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, data: bytes | None = None):
        self.path = Path(path)
        data = self.path.read_bytes() if data is None else data
        self._data = data
        try:
            self.session = make_session(data, threads=threads, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise SeglibError(f"{self.path}: onnxruntime cannot load it ({first_line(exc, 200)})") from None
        self.fixed_hw = check_graph(self.session, self.path)

    def single_threaded(self) -> OnnxNetwork:
        """The same model in a session of one intra-op thread, which several threads may call at once: photos
        predicted side by side, one per core (`seglib.predict.files`)."""
        return OnnxNetwork(self.path, threads=1, data=self._data)

    def __call__(self, batch: np.ndarray, tta: bool = False) -> np.ndarray:
        n = len(batch)
        x = np.concatenate([batch, batch[..., ::-1]]) if tta else batch
        probs = np.array(self.logits(np.ascontiguousarray(x, dtype=np.float32))[:, 0], dtype=np.float32)
        with np.errstate(over="ignore"):  # the sigmoid in place: exp(1000) is inf, and 1 / (1 + inf) the 0 it is
            np.negative(probs, out=probs)
            np.exp(probs, out=probs)
            probs += 1.0
            np.reciprocal(probs, out=probs)
        if tta:
            probs = probs[:n] + probs[n:, :, ::-1]
            probs *= 0.5
        return probs

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N,1,H,W) logits of an (N,3,H,W) float32 batch; a one-line SeglibError for a shape it cannot take."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise SeglibError(f"{self.path}: expects an (N,3,H,W) batch, got {tuple(x.shape)}")
        return run_logits(self.session, x, self.fixed_hw, self.path)


def run_logits(session, x: np.ndarray, fixed_hw: tuple[int, int] | None, path: Path) -> np.ndarray:
    """The session's logits for an (N,3,H,W) float32 batch; one-line SeglibErrors for a size the graph does not
    take and for a failed run."""
    if fixed_hw is not None and tuple(x.shape[2:]) != fixed_hw:
        h, w = fixed_hw
        raise SeglibError(f"{path}: exported with a fixed {h}x{w} input; got {x.shape[2]}x{x.shape[3]} "
                          "(letterbox to the model's input_size first)")
    try:
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise SeglibError(f"{path}: onnxruntime failed on an input of {x.shape[0]}x3x{x.shape[2]}x"
                          f"{x.shape[3]} ({first_line(exc, 160)})") from None


def load_onnx_network(path: str | os.PathLike, *, threads: int | None = None,
                      check_weights: bool = True) -> tuple[OnnxNetwork, dict]:
    """(OnnxNetwork, checkpoint-like dict) of a seglib export. `check_weights=False` skips parsing the file
    with the onnx package (metadata read from ONNX Runtime instead): only for bytes just verified otherwise. The
    prediction cache is checked like any file: a cached export may be damaged, or not the checkpoint's."""
    path = Path(path)
    if not path.is_file():
        raise SeglibError(f"{path}: ONNX model not found")
    data = path.read_bytes()
    props = read_metadata(path, data) if check_weights else None
    network = OnnxNetwork(path, threads=threads, data=data)
    if props is None:
        props = dict(network.session.get_modelmeta().custom_metadata_map)
        check_format(props, path)
    checkpoint = checkpoint_like(props, path)
    check_input_size(checkpoint["input_size"], network.fixed_hw, path)
    return network, checkpoint


def check_format(props: dict[str, str], path: Path) -> None:
    """The metadata names seglib's export format; a one-line SeglibError otherwise."""
    if not props.get("format", "").startswith(ONNX_FORMAT.rpartition("/")[0] + "/"):
        raise SeglibError(f"{path}: not an ONNX model exported by seglib (no {ONNX_FORMAT} metadata; "
                          "export it with seglib.export.export_onnx)")


def check_input_size(size: int, fixed_hw: tuple[int, int] | None, path: Path) -> None:
    """A graph with a fixed input takes the input size its metadata states."""
    if fixed_hw is not None and fixed_hw != (size, size):
        raise CheckpointError(f"{path}: field 'input_size' is {size}, but the graph's input is fixed at "
                              f"{fixed_hw[0]}x{fixed_hw[1]}")


def checkpoint_like(props: dict[str, str], path: Path) -> dict:
    """An export's metadata as the checkpoint fields prediction reads (validated against `seglib.schema`)."""
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
        "protocol": _protocol(props.get("protocol")),
    }
    for key in ("epoch", "best_val_iou"):  # Predictor.describe shows them when present
        if meta.get(key) is not None:
            checkpoint[key] = meta[key]
    return checkpoint


def _protocol(text: str | None) -> dict | None:
    """The val-chosen threshold and TTA an export recorded ({threshold, tta, source}); None when absent or odd."""
    try:
        value = json.loads(text) if text else None
        ok = isinstance(value, dict) and 0.0 < float(value["threshold"]) < 1.0
    except (ValueError, TypeError, KeyError):
        return None
    return {"threshold": float(value["threshold"]), "tta": bool(value.get("tta")),
            "source": str(value.get("source", "")), "inference": value.get("inference"),
            "refine": bool(value.get("refine"))} if ok else None


def decode_onnx_metadata(props: dict[str, str], where: str) -> dict:
    """An ONNX file's metadata_props (all text) read back into the checkpoint's field types and validated."""
    decoded: dict[str, Any] = {}
    for key, raw in props.items():
        f = BY_NAME.get(key)
        if f is None or f.decode is None:
            decoded[key] = raw  # the export's own notes (source, source_sha256, dynamic_hw): text
            continue
        try:
            decoded[key] = f.decode(raw)
        except (ValueError, TypeError):
            raise refuse(where, f"field '{key}' is {shown(raw)}, expected {f.expected}") from None
    validate_stored(decoded, "onnx", where)
    return decoded
