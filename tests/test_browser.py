"""Notebook 06's try-it widget in a real browser: Jupyter Lab, headless Chromium, a photo uploaded, its mask shown (slow).

Needs Playwright for Python (`pip install playwright`, never `playwright install`: it downloads a browser) and
Debian's Chromium (`apt-get install chromium`); skipped, saying so, when either is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from seglib.infra.paths import PROJECT_ROOT, notebooks_dir

CHROMIUM = Path(os.environ.get("SEGLIB_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL = "seglib"  # the kernelspec notebook 06's metadata names
NOTEBOOK = "06_try_it.ipynb"
REFERENCE = PROJECT_ROOT / "reports" / "reference"
RUN = "reference"
BUDGET_S = 480  # the whole test, server start to mask on screen; every wait gets only what is left of it
MASK_AFTER_MESSAGE_S = 60  # the widget sets its images right after the message

# Lab settings for a quiet, fully attached page: no news or update toasts over the widget, no cell windowing
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
KERNEL_IDLE = "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"
RUN_ALL_CELLS = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"  # not awaited
CELL_ERRORS = """() => {
    const cells = window.jupyterapp?.shell.currentWidget?.content?.model?.cells;
    const errors = [];
    for (let i = 0; cells && i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type === 'code')
            for (const out of cell.outputs.toJSON()) if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}`);
    }
    return errors;
}"""
WIDGET_OR_ERROR = f"() => !!document.querySelector('.seglib-message') || ({CELL_ERRORS})().length > 0"
MASK_SRC = "() => document.querySelector('.seglib-mask')?.src ?? ''"
MASK_SHOWN = ("before => { const m = document.querySelector('.seglib-mask');"
              " return !!m && m.src !== before && m.complete && m.naturalWidth > 0; }")
MESSAGE_NAMES = "name => (document.querySelector('.seglib-message')?.textContent ?? '').includes(name)"
MASK_PIXELS = """() => {
    const m = document.querySelector('.seglib-mask');
    const canvas = document.createElement('canvas');
    canvas.width = m.naturalWidth; canvas.height = m.naturalHeight;
    const g = canvas.getContext('2d');
    g.drawImage(m, 0, 0);
    const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let person = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] > 127) person++;
    return {width: canvas.width, height: canvas.height, person: person / (canvas.width * canvas.height)};
}"""


class Deadline:
    """What is left of one test's time budget, in the units each kind of wait takes."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def seconds(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            pytest.fail(f"the browser test ran past its {BUDGET_S} s budget")
        return left

    def ms(self, at_most_s: float = float("inf")) -> float:
        return 1000 * min(self.seconds(), at_most_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"


@pytest.fixture
def deadline() -> Deadline:
    return Deadline(BUDGET_S)


@pytest.fixture
def start_playwright():
    """Playwright's sync API and Debian's Chromium, or a skip naming what to install."""
    api = pytest.importorskip("playwright.sync_api", reason="Playwright missing: pip install playwright")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set SEGLIB_TEST_CHROMIUM)")
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.skip(f"no '{KERNEL}' Jupyter kernel: python -m ipykernel install --sys-prefix --name {KERNEL}")
    return api.sync_playwright


@pytest.fixture
def lab_folder(tmp_path, real_dataset) -> tuple[Path, dict[str, str]]:
    """(Lab's root folder holding a copy of notebook 06, the server's environment pointing it at the reference run)."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(notebooks_dir() / NOTEBOOK, root / NOTEBOOK)
    run_dir = tmp_path / "runs" / RUN
    run_dir.mkdir(parents=True)
    shutil.copy(REFERENCE / "best.pt", run_dir / "best.pt")
    shutil.copy(REFERENCE / "metrics" / "config.yaml", run_dir / "config.yaml")  # the data set it trained on
    for name, values in LAB_SETTINGS.items():
        path = tmp_path / "lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    (tmp_path / "notary").mkdir()
    env = dict(os.environ, SEGLIB_RUNS_DIR=str(tmp_path / "runs"), SEGLIB_RUN=RUN,
               SEGLIB_REPORTS_DIR=str(tmp_path / "reports"), SEGLIB_DATA_DIR=str(real_dataset.parent),
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
               OMP_NUM_THREADS="1")  # the kernel's torch: one core, the machine is shared
    return root, env


@pytest.fixture
def jupyter_lab(lab_folder, tmp_path, deadline):
    """The URL of a Jupyter Lab serving `lab_folder` on a free port of 127.0.0.1, stopped (kernel too) after."""
    root, env = lab_folder
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyter-lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", f"--NotebookNotary.data_dir={tmp_path / 'notary'}",
               "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run all cells by command
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # its own process group: the kernel goes with it
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if server.poll() is not None:
                pytest.fail(f"Jupyter Lab exited with {server.returncode}:\n{log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if deadline.seconds() < 1:
                    pytest.fail(f"Jupyter Lab did not answer on {url}:\n{log_tail(log)}")
                time.sleep(0.5)
        yield f"{url}/lab/tree/{NOTEBOOK}?token={token}", log
    finally:
        server.terminate()  # SIGTERM: the server shuts its kernels down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.fixture
def browser_page(start_playwright, tmp_path, deadline):
    """(a page of headless Chromium with a fresh profile, the console errors it logs), closed after."""
    errors: list[str] = []
    with start_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, timeout=deadline.ms())
        context.set_default_timeout(deadline.ms())  # a backstop for any wait below not given its own
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            yield page, errors
        finally:
            context.close()


@pytest.mark.slow
def test_a_photo_uploaded_in_the_browser_gets_its_mask_shown_by_the_try_it_widget(
        browser_page, jupyter_lab, real_dataset, tmp_path, deadline):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url, server_log = jupyter_lab
    page, console_errors = browser_page
    photo = tmp_path / "photo-to-upload.jpg"
    shutil.copy(sorted((real_dataset / "Training_Images").glob("*.jpg"))[0], photo)
    width, height = Image.open(photo).size

    def failed(what: str) -> str:
        try:
            notebook_errors = "\n".join(page.evaluate(CELL_ERRORS))
        except Exception as exc:  # noqa: BLE001 (the page itself may be gone)
            notebook_errors = f"(page unreadable: {exc})"
        return (f"{what}\nnotebook cell errors:\n{notebook_errors or '(none)'}\n"
                f"browser console errors:\n{chr(10).join(console_errors[-10:]) or '(none)'}\n"
                f"Jupyter Lab log:\n{log_tail(server_log)}")

    # 1. open the notebook and wait for its kernel
    page.goto(url, timeout=deadline.ms())
    try:
        page.wait_for_function(KERNEL_IDLE, timeout=deadline.ms(), polling=500)
    except PlaywrightTimeout:
        pytest.fail(failed(f"{NOTEBOOK} opened, but its '{KERNEL}' kernel never became idle"))

    # 2. run all cells; the widget appears under its cell, unless a cell before it fails
    page.evaluate(RUN_ALL_CELLS)
    try:
        page.wait_for_function(WIDGET_OR_ERROR, timeout=deadline.ms(), polling=500)
    except PlaywrightTimeout:
        pytest.fail(failed("the try-it widget (its .seglib-message line) never appeared after Run All Cells"))
    if page.evaluate(CELL_ERRORS):
        pytest.fail(failed("a cell of the notebook failed before the try-it widget appeared"))
    page.locator(".seglib-message").wait_for(state="visible", timeout=deadline.ms())
    mask_before = page.evaluate(MASK_SRC)

    # 3. upload the photo through the widget's button (ipywidgets keeps its <input type=file> out of the page)
    with page.expect_file_chooser(timeout=deadline.ms()) as chooser:
        page.locator(".seglib-tryit .seglib-upload").click(timeout=deadline.ms())
    chooser.value.set_files(photo, timeout=deadline.ms())

    # 4. the message names the photo, and a new mask image is shown
    try:
        page.wait_for_function(MESSAGE_NAMES, arg=photo.name, timeout=deadline.ms(), polling=250)
    except PlaywrightTimeout:
        message = page.locator(".seglib-message").inner_text(timeout=deadline.ms())
        pytest.fail(failed(f"after uploading {photo.name} the widget's message still reads {message!r}"))
    message = page.locator(".seglib-message").inner_text(timeout=deadline.ms())
    try:
        page.wait_for_function(MASK_SHOWN, arg=mask_before, timeout=deadline.ms(MASK_AFTER_MESSAGE_S), polling=250)
    except PlaywrightTimeout:
        pytest.fail(failed(f"the message reads {message!r}, but no new mask image (.seglib-mask) was shown"))

    # 5. the mask on screen is the uploaded photo's: its shape, a person and a background, the share the message says
    mask = page.evaluate(MASK_PIXELS)
    assert abs(mask["width"] / mask["height"] - width / height) < 0.02, (mask, (width, height))
    assert 0.02 < mask["person"] < 0.98, f"the mask shown is nearly all one value: {mask}"
    share = re.search(r"(\d+)% of the picture", message)  # the message's own figure, when it still gives one
    if share:
        assert abs(mask["person"] - int(share.group(1)) / 100) < 0.05, (mask, message)
