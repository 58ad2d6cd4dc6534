"""seglib.training.runtime: the device and thread count a training run gets."""

from __future__ import annotations

import pytest
import torch

from seglib.infra.errors import ConfigError
from seglib.profiles import make_config
from seglib.training.runtime import Runtime, reduce_mean, setup_runtime


def test_cpu_runtime_sets_the_thread_count():
    before = torch.get_num_threads()
    try:
        runtime = setup_runtime(make_config("smoke", {"device": "cpu", "threads": 1}))
        assert runtime.device == torch.device("cpu") and runtime.main and not runtime.distributed
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cuda_without_cuda_is_a_settings_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="setting device=cuda"):
        setup_runtime(make_config("smoke", {"device": "cuda"}))


def test_reduce_mean_on_one_process():
    assert reduce_mean(6.0, 3, Runtime(torch.device("cpu"))) == 2.0
    assert reduce_mean(0.0, 0, Runtime(torch.device("cpu"))) == 0.0
