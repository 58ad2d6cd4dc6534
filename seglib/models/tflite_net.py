"""A TensorFlow Lite graph as a trainable PyTorch module (MediaPipe's selfie segmenter as an initialisation).

`read_tflite(path)` turns a .tflite file into a plain-data graph description (`spec`: tensors, operators and
their options; JSON- and checkpoint-safe) and its constant tensors as float32 arrays (fp16 weights are
dequantised). `TFLiteNet(spec, weights)` runs that graph in PyTorch (NCHW) with every convolution an
`nn.Conv2d`/`nn.ConvTranspose2d`, so it can be fine-tuned like any other model. The final sigmoid is left out:
the module returns logits, like every seglib model. Only the operators MediaPipe's segmentation models use are
supported; anything else is refused with the operator's name.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from seglib.geometry import NORMALIZATION
from seglib.infra.errors import ConfigError

# Constant-size operators only: what MediaPipe's selfie segmentation models are made of.
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "RELU", "RELU6", "HARD_SWISH", "LOGISTIC", "ADD", "MUL",
             "AVERAGE_POOL_2D", "RESIZE_BILINEAR", "Convolution2DTransposeBias")
ACTIVATIONS = {0: None, 1: "RELU", 3: "RELU6"}  # tflite ActivationFunctionType values we accept
PADDING = {0: "SAME", 1: "VALID"}  # tflite Padding enum
CUSTOM_PADDING = {1: "SAME", 2: "VALID"}  # TfLitePadding in MediaPipe's custom op options


def read_tflite(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Graph description (plain data) and constant tensors (float32) of a one-subgraph .tflite file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: TensorFlow Lite model file not found")
    try:
        import tflite
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("reading .tflite files needs the `tflite` package (pip install tflite)") from None
    data = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        if model.SubgraphsLength() != 1:
            raise ValueError(f"{model.SubgraphsLength()} subgraphs, expected 1")
        return _parse(model, graph, tflite, path, hashlib.sha256(data).hexdigest())
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable TensorFlow Lite model ({type(exc).__name__}: {exc})") from None


def _parse(model, graph, tflite, path: Path, sha256: str) -> tuple[dict, dict[str, np.ndarray]]:
    opnames = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT32: np.int32}

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.Tensors(index)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength() == 0:
            return None
        if tensor.Type() not in dtypes:
            raise ValueError(f"tensor {tensor.Name().decode()} has unsupported type {tensor.Type()}")
        raw = buffer.DataAsNumpy().tobytes()
        return np.frombuffer(raw, dtype=dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy()).copy()

    weights: dict[str, np.ndarray] = {}
    ops: list[dict] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = opnames.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = code.CustomCode().decode()
        inputs = [int(j) for j in op.InputsAsNumpy()]
        outputs = [int(j) for j in op.OutputsAsNumpy()]
        if name == "DEQUANTIZE":  # fp16 weights: store them as float32 under the dequantised tensor's index
            value = constant(inputs[0])
            if value is None:
                raise ValueError(f"operator {i} DEQUANTIZE of a non-constant tensor")
            weights[str(outputs[0])] = value.astype(np.float32)
            continue
        if name not in SUPPORTED:
            raise ConfigError(f"{path}: operator {name} (number {i}) is not supported; "
                              f"supported: {', '.join(SUPPORTED)}")
        for j in inputs:
            if str(j) not in weights and (value := constant(j)) is not None:
                weights[str(j)] = value.astype(np.float32) if value.dtype != np.int32 else value
        ops.append({"type": name, "inputs": inputs, "outputs": outputs, "options": _options(op, name, tflite)})
    shapes = {str(j): [int(d) for d in graph.Tensors(j).ShapeAsNumpy()] for j in range(graph.TensorsLength())}
    names = {str(j): graph.Tensors(j).Name().decode() for j in range(graph.TensorsLength())}
    (graph_input,), (graph_output,) = graph.InputsAsNumpy(), graph.OutputsAsNumpy()
    spec = {"source": path.name, "sha256": sha256, "input": int(graph_input), "output": int(graph_output),
            "shapes": shapes, "names": names, "ops": ops}
    return spec, weights


def _options(op, name: str, tflite) -> dict:
    """The operator options TFLiteNet needs, as plain data."""
    if name == "Convolution2DTransposeBias":
        padding, stride_w, stride_h = np.frombuffer(op.CustomOptionsAsNumpy().tobytes()[:12], dtype="<i4")
        return {"padding": CUSTOM_PADDING[int(padding)], "stride": [int(stride_h), int(stride_w)]}
    kinds = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
             "AVERAGE_POOL_2D": tflite.Pool2DOptions, "ADD": tflite.AddOptions, "MUL": tflite.MulOptions,
             "RESIZE_BILINEAR": tflite.ResizeBilinearOptions}
    if name not in kinds:
        return {}
    table = op.BuiltinOptions()
    options = kinds[name]()
    options.Init(table.Bytes, table.Pos)
    result: dict = {}
    if hasattr(options, "FusedActivationFunction"):
        activation = options.FusedActivationFunction()
        if activation not in ACTIVATIONS:
            raise ValueError(f"{name} with fused activation {activation} is not supported")
        result["activation"] = ACTIVATIONS[activation]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
        result["padding"] = PADDING[options.Padding()]
        result["stride"] = [options.StrideH(), options.StrideW()]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        result["dilation"] = [options.DilationHFactor(), options.DilationWFactor()]
    if name == "AVERAGE_POOL_2D":
        result["filter"] = [options.FilterHeight(), options.FilterWidth()]
    if name == "RESIZE_BILINEAR":
        if not options.HalfPixelCenters() and not options.AlignCorners():
            raise ValueError("RESIZE_BILINEAR without half_pixel_centers or align_corners is not supported")
        result["align_corners"] = bool(options.AlignCorners())
    return result


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (the extra pixel goes after): (before, after)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _same_padding_divisible(kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """`_same_padding` for any size divisible by `stride` (always true at stride 1): it does not depend on the
    size then, so a traced (ONNX) graph holds no shape arithmetic and accepts other input sizes."""
    total = max((kernel - 1) * dilation + 1 - stride, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, name: str | None) -> torch.Tensor:
    if name == "RELU":
        return F.relu(x)
    if name == "RELU6":
        return F.relu6(x)
    return x


class TFLiteNet(nn.Module):
    """Runs a `read_tflite` graph in PyTorch; returns logits (the graph's final sigmoid is dropped).

    Inputs are normalised with seglib's NORMALIZATION (like every seglib model) and mapped back to the [0, 1]
    range the TFLite model was trained on inside the module. Any input size divisible by the graph's total
    stride works: global average pools and 2x resizes follow the input.
    """

    def __init__(self, spec: dict, weights: dict[str, np.ndarray] | None = None):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict()
        ops = list(spec["ops"])
        if ops and ops[-1]["type"] == "LOGISTIC" and ops[-1]["outputs"] == [spec["output"]]:
            self.output_index = ops[-1]["inputs"][0]
            ops = ops[:-1]
        else:
            self.output_index = spec["output"]
        self.ops = ops
        for number, op in enumerate(ops):
            layer = self._make_layer(op)
            if layer is not None:
                self.layers[str(number)] = layer
                if weights is not None:
                    self._load_layer(layer, op, weights)
        mean = torch.tensor(NORMALIZATION["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(NORMALIZATION["std"]).view(1, 3, 1, 1)
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.total_stride = self._total_stride()

    def _shape(self, index: int) -> list[int]:
        return self.spec["shapes"][str(index)]

    def _make_layer(self, op: dict) -> nn.Module | None:
        kind = op["type"]
        if kind == "CONV_2D":
            out_c, kh, kw, in_c = self._shape(op["inputs"][1])
            return nn.Conv2d(in_c, out_c, (kh, kw), stride=tuple(op["options"]["stride"]),
                             dilation=tuple(op["options"]["dilation"]), bias=len(op["inputs"]) > 2)
        if kind == "DEPTHWISE_CONV_2D":
            _, kh, kw, out_c = self._shape(op["inputs"][1])
            in_c = self._shape(op["inputs"][0])[3]
            return nn.Conv2d(in_c, out_c, (kh, kw), stride=tuple(op["options"]["stride"]),
                             dilation=tuple(op["options"]["dilation"]), groups=in_c, bias=len(op["inputs"]) > 2)
        if kind == "Convolution2DTransposeBias":
            out_c, kh, kw, in_c = self._shape(op["inputs"][1])
            if op["options"]["padding"] != "SAME" or [kh, kw] != op["options"]["stride"]:
                raise ConfigError(f"{self.spec['source']}: transposed convolution with kernel {kh}x{kw} and "
                                  f"options {op['options']} is not supported (only kernel == stride, SAME)")
            return nn.ConvTranspose2d(in_c, out_c, (kh, kw), stride=(kh, kw), bias=True)
        if kind == "RESIZE_BILINEAR":
            (_, in_h, in_w, _), (_, out_h, out_w, _) = self._shape(op["inputs"][0]), self._shape(op["outputs"][0])
            if out_h % in_h or out_w % in_w:
                raise ConfigError(f"{self.spec['source']}: RESIZE_BILINEAR from {in_h}x{in_w} to {out_h}x{out_w} "
                                  "is not supported (only whole-number factors)")
        return None

    @staticmethod
    def _load_layer(layer: nn.Module, op: dict, weights: dict[str, np.ndarray]) -> None:
        kernel = torch.from_numpy(weights[str(op["inputs"][1])])
        if op["type"] == "CONV_2D":  # OHWI -> OIHW
            kernel = kernel.permute(0, 3, 1, 2)
        elif op["type"] == "DEPTHWISE_CONV_2D":  # 1HWC -> C1HW
            kernel = kernel[0].permute(2, 0, 1).unsqueeze(1)
        else:  # transposed: OHWI -> IOHW
            kernel = kernel.permute(3, 0, 1, 2)
        with torch.no_grad():
            layer.weight.copy_(kernel)
            if layer.bias is not None:
                layer.bias.copy_(torch.from_numpy(weights[str(op["inputs"][2])]).reshape(-1))

    def _total_stride(self) -> int:
        height = self._shape(self.spec["input"])[1]
        smallest = min(self._shape(op["outputs"][0])[1] for op in self.ops if self._shape(op["outputs"][0])[1] > 1)
        return max(1, height // smallest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tensors(x)[self.output_index]

    def tensors(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every tensor of the graph for input `x` (seglib-normalised NCHW), by its index in the .tflite file."""
        if x.shape[1] != 3:
            raise ValueError(f"{self.spec['source']} expects 3 input channels, got {x.shape[1]}")
        values: dict[int, torch.Tensor] = {self.spec["input"]: x * self.input_std + self.input_mean}
        for number, op in enumerate(self.ops):
            values[op["outputs"][0]] = self._run(number, op, values)
        return values

    def _run(self, number: int, op: dict, values: dict[int, torch.Tensor]) -> torch.Tensor:
        kind, options = op["type"], op["options"]
        x = values.get(op["inputs"][0])
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            layer = self.layers[str(number)]
            if options["padding"] == "SAME":
                (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
                if x.shape[2] % sh or x.shape[3] % sw:  # sizes the network is not meant for: TF's exact rule
                    top, bottom = _same_padding(x.shape[2], kh, sh, dh)
                    left, right = _same_padding(x.shape[3], kw, sw, dw)
                else:
                    top, bottom = _same_padding_divisible(kh, sh, dh)
                    left, right = _same_padding_divisible(kw, sw, dw)
                if top or bottom or left or right:
                    x = F.pad(x, (left, right, top, bottom))
            return _activate(layer(x), options.get("activation"))
        if kind == "Convolution2DTransposeBias":
            return self.layers[str(number)](x)
        if kind == "RELU":
            return F.relu(x)
        if kind == "RELU6":
            return F.relu6(x)
        if kind == "HARD_SWISH":
            return F.hardswish(x)
        if kind == "LOGISTIC":
            return torch.sigmoid(x)
        if kind in ("ADD", "MUL"):
            a, b = values[op["inputs"][0]], values[op["inputs"][1]]
            return _activate(a + b if kind == "ADD" else a * b, options.get("activation"))
        if kind == "AVERAGE_POOL_2D":
            _, height, width, _ = self._shape(op["inputs"][0])
            if options["filter"] == [height, width] and options["padding"] == "VALID":  # global pooling
                return x.mean(dim=(2, 3), keepdim=True)
            if options["padding"] != "VALID":
                raise ConfigError(f"{self.spec['source']}: AVERAGE_POOL_2D with SAME padding is not supported")
            return F.avg_pool2d(x, tuple(options["filter"]), tuple(options["stride"]))
        if kind == "RESIZE_BILINEAR":
            _, in_h, in_w, _ = self._shape(op["inputs"][0])
            _, out_h, out_w, _ = self._shape(op["outputs"][0])
            # a scale factor, not a size computed from x.shape: ONNX tracing would freeze that size
            return F.interpolate(x, scale_factor=(out_h // in_h, out_w // in_w), mode="bilinear",
                                 align_corners=options["align_corners"])
        raise ConfigError(f"{self.spec['source']}: operator {kind} is not supported")  # pragma: no cover
