"""Pre-labels through a real Label Studio and back (slow: `make labelstudio-env` installs it into
.venv-labelstudio; `make test-slow` does that first).

Label Studio is started on 127.0.0.1 at a free port with a data folder of its own (a temporary one), an admin user
and an API token given through its environment; the test creates a project with the labelling configuration that
`seglib label export` wrote, imports its tasks (Label Studio checks each prediction against the configuration),
serves a photo from the local files the tasks name, accepts every pre-label as a person would (an annotation made
of the prediction Label Studio stored), exports the project as JSON, reads the export back with `seglib data add
--labelstudio`, and finds each mask exactly as it was sent: IoU 1.0."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_folders
from PIL import Image

from seglib.cli import main
from seglib.data.brush import decode_mask
from seglib.data.labelstudio import stored_orientation
from seglib.infra.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

LABEL_STUDIO = Path(os.environ.get("SEGLIB_LABEL_STUDIO", PROJECT_ROOT / ".venv-labelstudio" / "bin" / "label-studio"))
REFERENCE = PROJECT_ROOT / "reports" / "reference" / "best.pt"
START_SECONDS = 300  # a first start migrates a new database: tens of seconds on a laptop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """A Label Studio server of this test's own, and its REST API with the admin's token."""

    def __init__(self, data_dir: Path, document_root: Path):
        self.port, self.token = free_port(), secrets.token_hex(20)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
               "LABEL_STUDIO_USERNAME": "seglib@example.com", "LABEL_STUDIO_PASSWORD": secrets.token_hex(12),
               "LABEL_STUDIO_USER_TOKEN": self.token,
               "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
               # offline and quiet: no error reports, version checks or usage statistics sent anywhere
               "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "LATEST_VERSION_CHECK": "false",
               "COLLECT_ANALYTICS": "false"}
        self.log = data_dir.parent / "label-studio.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
                 str(self.port), "--enable-legacy-api-token"], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_until_up(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < START_SECONDS:
            if self.process.poll() is not None:
                pytest.fail(f"Label Studio stopped (exit {self.process.returncode}): {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        pytest.fail(f"Label Studio did not answer within {START_SECONDS} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def call(self, method: str, path: str, body=None):
        """The JSON answer of one API call (bytes for a file)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Token {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                data = reply.read()
                kind = reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}")
        return json.loads(data) if "json" in kind else data

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and the workers it started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def studio(tmp_path):
    if not LABEL_STUDIO.is_file():
        pytest.skip(f"Label Studio is not installed at {LABEL_STUDIO}: run `make labelstudio-env`")
    server = Studio(tmp_path / "label-studio-data", document_root=tmp_path / "shots")
    try:
        yield server
    finally:
        server.stop()


def test_pre_labels_come_back_from_label_studio_as_the_masks_sent(studio, tmp_path, monkeypatch, capsys):
    started = time.monotonic()
    monkeypatch.setenv("SEGLIB_DATASETS_DIR", str(tmp_path / "data" / "datasets"))
    images, _ = photo_folders(tmp_path / "shots", n=4, scale_every=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # one photo stored sideways: Label Studio measures it as a browser shows it
    Image.open(images / "p03.jpg").save(images / "p03.jpg", exif=exif, quality=95)
    # 1. the pre-labels, and what they say
    assert main(["label", "export", "--checkpoint", str(REFERENCE), str(images), "--to", "labelstudio", "--out",
                 str(tmp_path / "prelabels"), "--no-progress"]) == 0
    tasks = json.loads((tmp_path / "prelabels" / "tasks.json").read_text())
    sent = {}
    for task in tasks:
        region = task["predictions"][0]["result"][0]
        mask = decode_mask(region["value"]["rle"], region["original_height"], region["original_width"])
        orientation = 6 if task["data"]["seglib_photo"] == "p03.jpg" else 1
        sent[Path(task["data"]["seglib_photo"]).stem] = stored_orientation(mask, orientation)
    assert len(sent) == 4 and all(mask.any() for mask in sent.values())
    # 2. Label Studio: a project with the configuration, the tasks imported, a photo served from local files
    up = studio.wait_until_up()
    config = (tmp_path / "prelabels" / "labeling_config.xml").read_text()
    project = studio.call("POST", "/api/projects", {"title": "seglib round trip", "label_config": config})["id"]
    imported = studio.call("POST", f"/api/projects/{project}/import", tasks)
    assert (imported["task_count"], imported["prediction_count"]) == (4, 4)
    studio.call("POST", "/api/storages/localfiles", {"project": project, "path": str(images), "title": "photos",
                                                     "use_blob_urls": False})
    served = studio.call("GET", tasks[0]["data"]["image"])
    assert served == (images / tasks[0]["data"]["seglib_photo"]).read_bytes()
    # 3. every pre-label accepted as it is, then the project exported
    stored = studio.call("GET", f"/api/projects/{project}/tasks?page_size=100")
    for task in stored:
        studio.call("POST", f"/api/tasks/{task['id']}/annotations",
                    {"result": task["predictions"][0]["result"], "was_cancelled": False})
    export = studio.call("GET", f"/api/projects/{project}/export?exportType=JSON")
    (tmp_path / "export.json").write_bytes(export if isinstance(export, bytes) else json.dumps(export).encode())
    # 4. read back by seglib: the same masks, IoU 1.0
    assert main(["data", "add", "studio", "--labelstudio", str(tmp_path / "export.json"), "--images",
                 str(images)]) == 0
    for stem, mask in sent.items():
        back = np.asarray(Image.open(tmp_path / "data" / "derived" / "studio" / f"{stem}.png")) > 127
        assert (back & (mask > 0)).sum() == (back | (mask > 0)).sum(), stem  # IoU 1.0
    with capsys.disabled():
        print(f"\nLabel Studio round trip: server up in {up:.0f} s, {time.monotonic() - started:.0f} s in all")
