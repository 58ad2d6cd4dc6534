"""seglib.checkpoint: a file that cannot be used is one line saying what it is (case 10 of the new-user trial)."""

from __future__ import annotations

import pytest
import torch
from conftest import save_tiny_checkpoint

from seglib.checkpoint import load_checkpoint
from seglib.errors import CheckpointError


def test_a_good_checkpoint_loads(tmp_path):
    state = load_checkpoint(save_tiny_checkpoint(tmp_path / "best.pt"))
    assert state["format"] == "seglib-checkpoint/1"


@pytest.mark.parametrize(("make", "says"), [
    (lambda p: p.write_text("these are my notes\n"), "not a checkpoint (not a PyTorch file"),
    (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    (lambda p: p.mkdir(), "is a folder, not a checkpoint file"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "a PyTorch file, but not a seglib checkpoint"),
])
def test_unusable_files_say_what_they_are(tmp_path, make, says):
    path = tmp_path / "x.pt"
    make(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(str(path)) and says in message
    assert "\n" not in message and "unsafe" not in message


def test_a_truncated_checkpoint_is_called_truncated(tmp_path):
    good = save_tiny_checkpoint(tmp_path / "best.pt").read_bytes()
    for cut in (len(good) // 2, len(good) - 30, 100):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match=r"truncated or corrupt checkpoint") as info:
            load_checkpoint(path)
        assert "Errno" not in str(info.value) and "unsafe" not in str(info.value)


class _Marker:
    def __reduce__(self):
        return (print, ("ran",))


def test_pickled_code_is_refused_as_unsafe_with_whole_words(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "seglib-checkpoint/1", "x": _Marker()}, path)
    with pytest.raises(CheckpointError, match="refused as unsafe") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and (message.endswith(")") or message.endswith("...)"))


def test_resume_from_a_truncated_last_pt_says_what_to_do(synthetic_splits, tmp_path):
    from seglib.engine import load_resume_state
    from seglib.runs import Run

    run = Run(tmp_path / "r")
    run.dir.mkdir()
    good = save_tiny_checkpoint(run.last).read_bytes()
    run.last.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt checkpoint.*start again with --overwrite"):
        load_resume_state(run)
