"""seglib.infra.devices: one rule for "auto" and clear errors for a device that is not there."""

from __future__ import annotations

import pytest
import torch

from seglib.infra.devices import DEVICES, resolve_device
from seglib.infra.errors import SeglibError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert DEVICES == ("auto", "cpu", "cuda")


def test_missing_or_unknown_devices_are_one_line_errors():
    if not torch.cuda.is_available():
        with pytest.raises(SeglibError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(SeglibError, match="unknown"):
        resolve_device("tpu")
