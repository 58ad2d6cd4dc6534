"""What the core says while it works: each module logs to `logging.getLogger(__name__)`, under the "seglib" logger;
the command line and every notebook's first cell call `show_messages` to put it in front of a person."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from tqdm import tqdm


class _Lines(logging.Handler):
    """Progress as bare lines on `stream` (sys.stdout when None), warnings as `seglib: ...` on sys.stderr: the
    streams as they are at each message (a notebook kernel and pytest replace them), written through `tqdm.write`
    so that a progress bar on the terminal is not broken."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        warning = record.levelno >= logging.WARNING
        try:
            tqdm.write(f"seglib: {record.getMessage()}" if warning else record.getMessage(),
                       file=sys.stderr if warning else self.stream or sys.stdout)
        except Exception:  # logging's own rule: a message that cannot be written never stops the work
            self.handleError(record)


def show_messages(stream: TextIO | None = None) -> None:
    """Show the "seglib" logger's messages from INFO up; calling it again replaces its handler (no line twice)."""
    logger = logging.getLogger("seglib")
    logger.setLevel(logging.INFO)
    for handler in [h for h in logger.handlers if isinstance(h, _Lines)]:
        logger.removeHandler(handler)
    logger.addHandler(_Lines(stream))
