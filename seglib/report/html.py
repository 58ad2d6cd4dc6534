"""Executed notebooks as self-contained HTML (nbconvert), and how paths are shown in reports."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from seglib.infra.io import write_text_atomic

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class DropMessages(logging.Filter):
    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def render_html(ipynb: str | os.PathLike, html_path: str | os.PathLike, *, with_code: bool = False) -> Path:
    """An executed notebook as one HTML file (figures embedded as base64 PNG); code hidden unless with_code."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    # Progress bars (tqdm widgets) would only show as a frozen first frame or as a script fetched from a CDN:
    # the HTML keeps the text they print, not the widgets. The .ipynb beside it keeps everything.
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})]
    hide = not with_code
    exporter = HTMLExporter(exclude_input=hide, exclude_input_prompt=hide, exclude_output_prompt=hide,
                            embed_images=True)
    quiet = DropMessages("Alternative text is missing")  # matplotlib figures have no alt text; not news
    exporter.log.addFilter(quiet)
    try:
        body, _ = exporter.from_notebook_node(nb)
    finally:
        exporter.log.removeFilter(quiet)
    write_text_atomic(html_path, body)
    return Path(html_path)
