"""seglib.infra.logs: the core's messages shown on the terminal and in notebooks."""

import logging

from seglib.infra.logs import show_messages


def test_progress_goes_to_stdout_bare_and_warnings_to_stderr_once_however_often_it_is_shown(capsys):
    show_messages()
    show_messages()  # every notebook's first cell calls it: no line twice
    logging.getLogger("seglib.training.engine").info("epoch   1/2  loss 0.5")
    logging.getLogger("seglib.infra.locks").warning("run runs/r: took over a stale lock")
    captured = capsys.readouterr()
    assert captured.out == "epoch   1/2  loss 0.5\n"
    assert captured.err == "seglib: run runs/r: took over a stale lock\n"
