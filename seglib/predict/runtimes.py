"""Which runtime predicts: ONNX Runtime on the CPU when it is installed and the model exports (masks equal to
PyTorch's up to float rounding; see `make bench` for its speed), PyTorch otherwise and on a GPU.

A checkpoint is exported once and kept in the cache folder under its content hash ($SEGLIB_CACHE_DIR, else
$XDG_CACHE_HOME/seglib, else ~/.cache/seglib), so later runs start at once; the threshold and TTA still come
from the checkpoint's own val evaluation at the time of the run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from seglib.errors import SeglibError

RUNTIMES = ("auto", "torch", "onnx")


def cache_dir() -> Path:
    """Where derived files (exported models) are kept between runs."""
    if os.environ.get("SEGLIB_CACHE_DIR"):
        return Path(os.environ["SEGLIB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seglib"


def cached_export(checkpoint: Path) -> Path:
    """The checkpoint exported to ONNX (verified against PyTorch by `export_onnx`), made on first use."""
    from seglib.export import export_onnx

    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:20]
    path = cache_dir() / "onnx" / f"{digest}.onnx"
    if not path.is_file():
        export_onnx(checkpoint, path, overwrite=True)  # atomic: two runs exporting at once each write whole
    return path


def load_predictor(checkpoint: Path, *, runtime: str = "auto", device: str = "auto",
                   note: Callable[[str], None] = lambda _msg: None, **kwargs):
    """A Predictor for `checkpoint` in the chosen runtime: `auto` means ONNX Runtime when the device is the CPU
    and the export works (a failed export is noted and PyTorch used), PyTorch otherwise."""
    from seglib.checkpoint import load_checkpoint
    from seglib.devices import resolve_device
    from seglib.predict.predictor import Predictor
    from seglib.predict.protocol import val_protocol

    if runtime not in RUNTIMES:
        raise SeglibError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    state = load_checkpoint(checkpoint)  # a file that is not a whole seglib checkpoint is refused here, in one line
    resolved = resolve_device("cpu" if runtime == "onnx" and device == "auto" else device)
    if runtime == "torch" or (runtime == "auto" and resolved.type != "cpu"):
        return Predictor.from_checkpoint(checkpoint, device=resolved, **kwargs)
    if runtime == "onnx" and resolved.type != "cpu":
        raise SeglibError("--runtime onnx runs on the CPU; leave --device at auto or cpu")
    try:
        exported = cached_export(checkpoint)
    except Exception as exc:  # noqa: BLE001 - any failed export (a graph ONNX cannot hold, a full disk) means PyTorch
        if runtime == "onnx":
            raise SeglibError(f"{checkpoint}: cannot run in ONNX Runtime ({exc})") from None
        note(f"seglib: note: {checkpoint}: no ONNX export ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
             "predicting in PyTorch")
        return Predictor.from_checkpoint(checkpoint, device=resolved, **kwargs)
    kwargs.setdefault("protocol", val_protocol(checkpoint, state))
    predictor = Predictor.from_onnx(exported, **kwargs)
    predictor.source = f"{checkpoint} in ONNX Runtime"
    return predictor
