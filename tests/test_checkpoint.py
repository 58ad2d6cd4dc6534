"""seglib.checkpoint: a file that cannot be used is one line saying what it is (case 10 of the new-user trial)."""

from __future__ import annotations

import pytest
import torch
from conftest import save_tiny_checkpoint

from seglib.checkpoint import load_checkpoint
from seglib.infra.errors import CheckpointError


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
    from seglib.runs import Run
    from seglib.training.engine import load_resume_state

    run = Run(tmp_path / "r")
    run.dir.mkdir()
    good = save_tiny_checkpoint(run.last).read_bytes()
    run.last.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"truncated or corrupt checkpoint.*start again with --overwrite"):
        load_resume_state(run)


# ------------------------------------------------------------------ the schema checked on load (issue 21, case 10)


def _edited(tmp_path, name: str, **changes) -> str:
    """A copy of a good tiny checkpoint with fields changed (None: removed), as a path string."""
    state = torch.load(save_tiny_checkpoint(tmp_path / "good.pt", input_size=64), weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def _refusal(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ["config", "threshold", "model_state", "input_size", "normalization",
                                  "seglib_version"])
def test_a_checkpoint_missing_a_required_field_is_refused_naming_the_file_and_the_field(tmp_path, name):
    path = _edited(tmp_path, "bad.pt", **{name: None})
    assert f"field '{name}' is missing" in _refusal(path)


@pytest.mark.parametrize(("changes", "says"), [
    ({"threshold": 1.5}, "field 'threshold' is 1.5, expected a number between 0 and 1"),
    ({"threshold": 0.0}, "field 'threshold' is 0.0, expected a number between 0 and 1"),
    ({"threshold": float("nan")}, "field 'threshold' is nan"),
    ({"threshold": "0.5"}, "field 'threshold' is '0.5' (text), expected a number"),
    ({"threshold": True}, "field 'threshold' is True"),
    ({"input_size": 0}, "field 'input_size' is 0, expected a positive whole number"),
    ({"input_size": 64.0}, "field 'input_size' is 64.0, expected a positive whole number"),
    ({"input_size": 66}, "field 'input_size' is 66, expected a positive multiple of 4"),
    ({"config": "abc"}, "field 'config' is 'abc' (text), expected a table of training settings"),
    ({"normalization": {"mean": [0.5, 0.5]}}, "field 'normalization' is a table of 1 entries"),
    ({"model_state": {}}, "field 'model_state' is a table of 0 entries, expected a table of weight tensors"),
    ({"model_state": {"w": [1.0, 2.0]}}, "field 'model_state' is a table of 1 entries"),
    ({"epoch": -1}, "field 'epoch' is -1, expected a whole number, 0 or more"),
    ({"format": "seglib-checkpoint/x"}, "field 'format' is 'seglib-checkpoint/x' (text)"),
])
def test_a_mistyped_or_out_of_range_field_is_refused_naming_the_file_and_the_field(tmp_path, changes, says):
    assert says in _refusal(_edited(tmp_path, "bad.pt", **changes))


@pytest.mark.parametrize(("setting", "value"), [("depth", "2"), ("depth", 2.5), ("threshold", 1.5), ("model", "resnet"),
                                               ("colour", "blue")])
def test_a_bad_stored_setting_is_refused_naming_the_config_field_and_the_setting(tmp_path, setting, value):
    config = torch.load(save_tiny_checkpoint(tmp_path / "good.pt", input_size=64), weights_only=True)["config"]
    message = _refusal(_edited(tmp_path, "bad.pt", config={**config, setting: value}))
    assert "field 'config'" in message and setting in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_file_and_the_tensor(tmp_path, value):
    state = torch.load(save_tiny_checkpoint(tmp_path / "good.pt", input_size=64), weights_only=True)["model_state"]
    state = {k: v.clone() for k, v in state.items()}
    state["outc.conv.weight"].view(-1)[0] = value
    message = _refusal(_edited(tmp_path, "diverged.pt", model_state=state))
    assert "field 'model_state' holds non-finite weights (NaN or inf) in 'outc.conv.weight'" in message


def test_a_checkpoint_of_a_newer_seglib_is_refused_naming_both_versions(tmp_path):
    import seglib

    message = _refusal(_edited(tmp_path, "new.pt", seglib_version="99.1.0"))
    assert f"written by seglib 99.1.0, newer than this seglib {seglib.__version__}" in message
    message = _refusal(_edited(tmp_path, "newfmt.pt", format="seglib-checkpoint/2"))
    assert "format 'seglib-checkpoint/2' is newer than this seglib" in message and "'seglib-checkpoint/1'" in message


@pytest.mark.parametrize("version", ["0.0.9", "0.1.0", "0.1", "0.1.0.dev3", "0.1.0+local"])
def test_a_checkpoint_of_this_or_an_older_seglib_loads(tmp_path, version):
    assert load_checkpoint(_edited(tmp_path, "old.pt", seglib_version=version))["seglib_version"] == version


def test_the_committed_reference_checkpoints_pass_the_schema():
    from seglib.infra.paths import PROJECT_ROOT

    found = sorted((PROJECT_ROOT / "reports").glob("reference*/best.pt"))
    if not found:
        pytest.skip("no committed reference checkpoint in this checkout")
    for path in found:
        assert load_checkpoint(path)["format"] == "seglib-checkpoint/1"


@pytest.mark.parametrize("command", [
    ["predict", "--checkpoint", "{bad}", "{photo}", "--out", "{tmp}/masks", "--no-progress"],
    ["export", "--checkpoint", "{bad}", "--out", "{tmp}/model.onnx"],
    ["evaluate", "--checkpoint", "{bad}", "--out", "{tmp}/eval", "--split", "val"],
])
@pytest.mark.parametrize("changes", [{"config": None}, {"threshold": None}, {"model_state": None},
                                     {"threshold": "high"}, {"threshold": 1.5}])
def test_every_command_refuses_a_bad_checkpoint_with_one_line(tmp_path, capsys, command, changes):
    import numpy as np
    from PIL import Image

    from seglib.cli import main

    bad = _edited(tmp_path, "bad.pt", **changes)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(photo)
    argv = [a.format(bad=bad, photo=photo, tmp=tmp_path) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    field = next(iter(changes))
    assert err.startswith(f"seglib: error: {bad}: field '{field}' is "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "good.pt", "photo.png"]  # nothing written
