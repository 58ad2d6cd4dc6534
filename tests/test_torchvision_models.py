"""seglib.models.torchvision_models: ImageNet backbone weights downloaded from a local HTTP server (into a temporary
torch.hub folder) load into the backbone; a failed download is one line saying what to do instead; a local copy
of the file loads too, and one that does not fit is refused naming the tensor; each run records where it started."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch
from torchvision.models import mobilenet_v3_large

from seglib.checkpoint import make_checkpoint, weights_description
from seglib.infra.errors import ConfigError
from seglib.models.model import build_model
from seglib.models.torchvision_models import IMAGENET_BACKBONE
from seglib.profiles import make_config

MODELS = ["lraspp-mobilenet-v3-large", "deeplabv3-mobilenet-v3-large"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, folder) of an HTTP server on 127.0.0.1 serving a folder, for the module's tests."""
    folder = tmp_path_factory.mktemp("served")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def backbone_file(served):
    """A MobileNetV3-Large state dict (random, seeded) in the served folder, named as torch.hub wants: its sha256
    prefix after the last dash; and its tensors."""
    _, folder = served
    torch.manual_seed(0)
    state = mobilenet_v3_large(weights=None).state_dict()
    scratch = folder / "scratch.pth"
    torch.save(state, scratch)
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    path = scratch.rename(folder / f"mobilenet_v3_large-{digest[:8]}.pth")
    return path, state


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """torch.hub's folder in tmp_path (TORCH_HOME), so nothing cached elsewhere is used or left behind."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _weights_url(monkeypatch, url: str) -> None:
    monkeypatch.setattr(IMAGENET_BACKBONE.value, "url", url)


def _backbone_equals(model, state: dict) -> bool:
    own = model.net.backbone.state_dict()
    return all(torch.equal(own[k.removeprefix("features.")], v) for k, v in state.items()
               if k.startswith("features."))


@pytest.mark.parametrize("name", MODELS)
def test_imagenet_weights_are_downloaded_into_the_backbone(name, served, backbone_file, offline_hub, monkeypatch):
    url, _ = served
    path, state = backbone_file
    _weights_url(monkeypatch, f"{url}/{path.name}")
    model = build_model(name, encoder_weights="imagenet")
    assert _backbone_equals(model, state)
    assert (offline_hub / path.name).is_file()  # cached by torch.hub where TORCH_HOME says
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("served_as", ["missing", "wrong-hash"])
def test_a_failed_download_is_one_line_saying_what_to_do(served_as, served, offline_hub, monkeypatch):
    url, folder = served
    name = "mobilenet_v3_large-0123abcd.pth"
    if served_as == "wrong-hash":  # downloaded, but not the file its name promises
        (folder / name).write_bytes(b"not these weights")
    _weights_url(monkeypatch, f"{url}/{name}" if served_as == "wrong-hash" else f"{url}/absent-0123abcd.pth")
    with pytest.raises(ConfigError) as info:
        build_model("lraspp-mobilenet-v3-large", encoder_weights="imagenet")
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("setting encoder_weights=imagenet: could not download "
                              f"MobileNet_V3_Large_Weights.IMAGENET1K_V1 from {url}/")
    assert f"into {offline_hub} (" in message
    assert "--set encoder_weights=none" in message and "local copy" in message
    assert ("HTTPError" in message) if served_as == "missing" else ("invalid hash value" in message)
    assert not offline_hub.exists() or not any(offline_hub.iterdir())  # nothing half-downloaded is kept


def test_a_local_copy_of_the_file_loads_and_a_misfit_is_refused(backbone_file, tmp_path):
    path, state = backbone_file
    model = build_model("deeplabv3-mobilenet-v3-large", encoder_weights=str(path))
    assert _backbone_equals(model, state)
    misfit = tmp_path / "misfit.pth"
    torch.save({k: v for k, v in state.items() if k != "features.16.1.weight"}, misfit)
    with pytest.raises(ConfigError, match=r"misfit.pth: backbone weights do not fit the IntermediateLayerGetter: "
                                          r"missing 1 \(16\.1\.weight\)"):
        build_model("lraspp-mobilenet-v3-large", encoder_weights=str(misfit))
    with pytest.raises(ConfigError, match="encoder_weights=mediapipe: model=lraspp-mobilenet-v3-large takes "
                                          "encoder_weights=none, imagenet or a local file"):
        build_model("lraspp-mobilenet-v3-large", encoder_weights="mediapipe")


@pytest.mark.parametrize(("weights", "says"), [
    ("none", "random initialisation (trained from scratch)"),
    ("imagenet", "ImageNet-trained MobileNetV3-Large backbone (torchvision's MobileNet_V3_Large_Weights.IMAGENET1K_V1, "
                 "downloaded by torchvision); LR-ASPP head from random initialisation"),
    ("/data/mobilenet_v3_large.pth", "MobileNetV3-Large backbone initialised from local file "
                                     "/data/mobilenet_v3_large.pth; LR-ASPP head from random initialisation"),
])
def test_the_run_records_which_weights_it_started_from(weights, says):
    cfg = make_config("smoke", {"model": "lraspp-mobilenet-v3-large", "encoder_weights": weights, "input_size": 64})
    assert weights_description(cfg) == says
    state = make_checkpoint(build_model("lraspp-mobilenet-v3-large"), cfg, epoch=1, val_iou=0.5, best_val_iou=0.5)
    assert state["weights"] == says


def test_deeplabv3_trains_on_batches_of_two_or_more():
    with pytest.raises(ConfigError, match="setting batch_size=1: model=deeplabv3-mobilenet-v3-large trains on batches "
                                          "of 2 or more"):
        make_config("smoke", {"model": "deeplabv3-mobilenet-v3-large", "batch_size": 1, "input_size": 64})
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # why: one image, no variance
        build_model("deeplabv3-mobilenet-v3-large").train()(torch.randn(1, 3, 64, 64))
