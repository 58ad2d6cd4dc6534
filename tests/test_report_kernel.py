"""seglib.report.kernel: the kernel manager overrides public jupyter_client methods only (this test fails when
one of them disappears or changes its parameters), stop signals are noted, and the kernel's stderr is relayed
without its shutdown noise."""

import inspect
import os
import signal
import tempfile

import pytest
from jupyter_client.manager import AsyncKernelManager

from seglib.report.kernel import SHUTDOWN_NOISE, StopFlag, kernel_manager_class, noting_stops, relay_stderr


def test_the_kernel_manager_overrides_public_methods_of_jupyter_client_with_their_parameters():
    manager = kernel_manager_class(StopFlag(), stderr_file=None)
    overridden = {name: f for name, f in vars(manager).items() if inspect.iscoroutinefunction(f)}
    assert sorted(overridden) == ["shutdown_kernel", "start_kernel"]
    for name, function in overridden.items():
        base = getattr(AsyncKernelManager, name)
        assert inspect.iscoroutinefunction(base), name
        assert list(inspect.signature(function).parameters) == list(inspect.signature(base).parameters), name
    assert callable(AsyncKernelManager.interrupt_kernel) and isinstance(AsyncKernelManager.has_kernel, property)


def test_a_stop_signal_is_noted_and_then_handled_as_before():
    flag = StopFlag()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in `seglib report` (not a worker's)
    try:
        with pytest.raises(KeyboardInterrupt), noting_stops(flag):
            os.kill(os.getpid(), signal.SIGINT)
        assert flag.signum == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_kernel_stderr_is_relayed_without_the_shutdown_noise(capsys):
    with tempfile.TemporaryFile() as fh:
        fh.write(f"a library warning\n{SHUTDOWN_NOISE[0]} (detail)\nlast line\n".encode())
        relay_stderr(fh)
    assert capsys.readouterr().err == "a library warning\nlast line\n"
