"""Which runtime predicts: ONNX Runtime on the CPU when it is installed and the model exports (masks equal to
PyTorch's up to float rounding; see `make bench` for its speed), PyTorch otherwise and on a GPU.

A checkpoint is exported once and kept in the cache folder under its content hash ($SEGLIB_CACHE_DIR, else
$XDG_CACHE_HOME/seglib, else ~/.cache/seglib). Later runs on a machine without CUDA load that export without
importing torch at all (NumPy, OpenCV and ONNX Runtime only), so they start at once; the threshold
and TTA still come from the checkpoint's own val evaluation at the time of the run. A cached export is used only
when it records the checkpoint's own hash and its weights are finite (what `--onnx` checks of a file); otherwise it
is made again, and a note says why. The export step writes the hash of the bytes it verified beside the export
(`.sha256`); a later run whose export still has those bytes skips parsing the file with the onnx package again
(the import alone takes more than half a second), reading the metadata from ONNX Runtime's session instead.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from seglib.infra.errors import SeglibError

RUNTIMES = ("auto", "torch", "onnx")
# raised whenever export_onnx writes a different graph for the same checkpoint (r2: Pads merged into Convs)
EXPORT_REVISION = "r2"


def cache_dir() -> Path:
    """Where derived files (exported models) are kept between runs."""
    if os.environ.get("SEGLIB_CACHE_DIR"):
        return Path(os.environ["SEGLIB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seglib"


def checkpoint_sha256(checkpoint: Path) -> str:
    """The SHA-256 of the checkpoint's bytes, as `export_onnx` records it in an export (`source_sha256`)."""
    return hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()


def export_path(checkpoint: Path, digest: str | None = None) -> Path:
    """Where the checkpoint's export is cached: named by the hash of the checkpoint's bytes (`digest`, computed
    when not given) and the revision of the export (an export made by an older seglib is made again, not reused)."""
    digest = digest or checkpoint_sha256(checkpoint)
    return cache_dir() / "onnx" / f"{digest[:20]}-{EXPORT_REVISION}.onnx"


def cached_export(checkpoint: Path, *, refresh: bool = False, digest: str | None = None) -> Path:
    """The checkpoint exported to ONNX (verified against PyTorch by `export_onnx`), made on first use or again
    with `refresh`."""
    from seglib.export import export_onnx

    path = export_path(checkpoint, digest)
    if refresh or not path.is_file():
        export_onnx(checkpoint, path, overwrite=True)  # atomic: two runs exporting at once each write whole
        _record_verified(path)
    return path


def verified_hash_path(exported: Path) -> Path:
    """Where the hash of a cached export's bytes, as they were verified when exported, is kept."""
    return exported.with_name(exported.name + ".sha256")


def _record_verified(exported: Path) -> None:
    """Keep the hash of an export's bytes as just verified (a cache that cannot be written is only slower)."""
    from seglib.infra.io import write_text_atomic

    try:
        write_text_atomic(verified_hash_path(exported), hashlib.sha256(exported.read_bytes()).hexdigest() + "\n")
    except OSError:
        pass


def still_verified(exported: Path) -> bool:
    """Whether a cached export holds exactly the bytes its export step verified (a file changed since, or one
    without the record, is checked in full)."""
    try:
        recorded = verified_hash_path(exported).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return recorded == hashlib.sha256(exported.read_bytes()).hexdigest()


def load_predictor(checkpoint: Path, *, runtime: str = "auto", device: str = "auto",
                   note: Callable[[str], None] = lambda _msg: None, **kwargs):
    """A Predictor for `checkpoint` in the chosen runtime: `auto` means ONNX Runtime when the device is the CPU
    and the export works (a failed export is noted and PyTorch used), PyTorch otherwise. An export cached by an
    earlier run is loaded without torch when the device can only be the CPU (`cuda_ruled_out`); one that cannot
    be used (damaged, weights not finite, another checkpoint's) is noted and made again."""
    from seglib.predict.predictor import Predictor

    if runtime not in RUNTIMES:
        raise SeglibError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    # 1. the cached export, without torch, where the device can only be the CPU
    checked = runtime != "torch" and (device == "cpu" or (device == "auto" and cuda_ruled_out()))
    if checked and Path(checkpoint).is_file():
        cached = _cached_predictor(checkpoint, note, **kwargs)
        if cached is not None:
            return cached
    # 2. the checkpoint, in PyTorch where that is the runtime
    from seglib.checkpoint import load_checkpoint
    from seglib.infra.devices import resolve_device

    load_checkpoint(checkpoint)  # a file that is not a whole seglib checkpoint is refused here, in one line
    resolved = resolve_device("cpu" if runtime == "onnx" and device == "auto" else device)
    if runtime == "torch" or (runtime == "auto" and resolved.type != "cpu"):
        return Predictor.from_checkpoint(checkpoint, device=resolved, **kwargs)
    if runtime == "onnx" and resolved.type != "cpu":
        raise SeglibError("--runtime onnx runs on the CPU; leave --device at auto or cpu")
    if not checked:
        cached = _cached_predictor(checkpoint, note, **kwargs)
        if cached is not None:
            return cached
    # 3. no usable export cached: made now (PyTorch when that fails, unless ONNX Runtime was asked for)
    try:
        exported = cached_export(checkpoint, refresh=True)
    except Exception as exc:  # noqa: BLE001 - any failed export (a graph ONNX cannot hold, a full disk) means PyTorch
        if runtime == "onnx":
            raise SeglibError(f"{checkpoint}: cannot run in ONNX Runtime ({exc})") from None
        note(f"seglib: note: {checkpoint}: no ONNX export ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
             "predicting in PyTorch")
        return Predictor.from_checkpoint(checkpoint, device=resolved, **kwargs)
    return _from_export(checkpoint, exported, checkpoint_sha256(checkpoint), **kwargs)


def _cached_predictor(checkpoint: Path, note: Callable[[str], None], **kwargs):
    """The Predictor of the checkpoint's cached export; None when there is none, or when it cannot be used
    (damaged, weights not finite, another checkpoint's: `note` says why, and it is made again)."""
    digest = checkpoint_sha256(checkpoint)
    cached = export_path(checkpoint, digest)
    if not cached.is_file():
        return None
    try:
        return _from_export(checkpoint, cached, digest, **kwargs)
    except SeglibError as exc:
        note(f"seglib: note: {str(exc).split('; ')[0]}; exporting {checkpoint} again")
        return None


def _from_export(checkpoint: Path, exported: Path, digest: str, **kwargs):
    """The Predictor of a checkpoint's export, with the protocol chosen on val for the checkpoint (the export's
    metadata holds the checkpoint's epoch and stored threshold, which `val_protocol` matches). A one-line
    SeglibError unless the export is whole, its weights finite and its recorded source hash `digest`."""
    from seglib.onnx_session import load_onnx_network
    from seglib.predict.predictor import Predictor, given_levers
    from seglib.predict.val_choice import val_protocol

    # finite weights, as `predict --onnx` checks, unless these are the very bytes checked before
    verified = still_verified(exported)
    network, facts = load_onnx_network(exported, check_weights=not verified)
    if facts.get("source_sha256") != digest:
        raise SeglibError(f"{exported}: was exported from another checkpoint (its recorded source_sha256 is not "
                          f"the hash of {checkpoint})")
    if not verified:  # checked in full now: the next run need not parse it again
        _record_verified(exported)
    kwargs = given_levers(kwargs)
    kwargs.setdefault("protocol", val_protocol(checkpoint, facts, kwargs.get("inference")))
    return Predictor(network, facts, source=f"{checkpoint} in ONNX Runtime", **kwargs)


def cuda_ruled_out() -> bool:
    """True where this machine cannot run CUDA, known without importing torch: Linux without NVIDIA's driver
    (no /proc/driver/nvidia, /dev/nvidiactl or WSL's /dev/dxg). Elsewhere torch is asked."""
    return sys.platform.startswith("linux") and not any(
        Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))
