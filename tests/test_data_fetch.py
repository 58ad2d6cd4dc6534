"""Tests of seglib.data.fetch on tiny fake data sets: folder, zip, real HTTP download, and refusals."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from seglib.data import fetch as fetch_mod
from seglib.data.fetch import FetchResult, fetch_dataset, resolve_source, verify_dataset_dir
from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError

NAME = paths.DATASET_NAME
N_PAIRS = 3


def make_dataset(parent: Path, folder: str = NAME, n: int = N_PAIRS) -> tuple[Path, str]:
    """A fake data set folder (n JPEG/PNG pairs and train.csv); returns (folder, sha256 of train.csv)."""
    root = parent / folder
    (root / "Training_Images").mkdir(parents=True)
    (root / "Ground_Truth").mkdir()
    lines = ["masks,images"]
    for i in range(1, n + 1):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / "Training_Images" / f"{i}.jpg")
        Image.new("L", (8, 8), 255).save(root / "Ground_Truth" / f"{i}.png")
        lines.append(f"{NAME}/Ground_Truth/{i}.png,{NAME}/Training_Images/{i}.jpg")
    data = ("\n".join(lines) + "\n").encode()
    (root / "train.csv").write_bytes(data)
    return root, hashlib.sha256(data).hexdigest()


def make_zip(zip_path: Path, dataset: Path, top: str = f"{NAME}-master", extra=()) -> Path:
    """Zip `dataset` under the top folder `top` (GitHub's archive layout), plus (ZipInfo|name, bytes) extras."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{top}/", b"")
        for path in sorted(dataset.rglob("*")):
            arc = f"{top}/{path.relative_to(dataset).as_posix()}"
            if path.is_dir():
                zf.writestr(arc + "/", b"")
            else:
                zf.write(path, arc)
        for info, data in extra:
            zf.writestr(info, data)
    return zip_path


def leftovers(dest_root: Path) -> list[str]:
    return sorted(p.name for p in dest_root.iterdir()) if dest_root.exists() else []


@pytest.fixture(autouse=True)
def _no_proxy_no_env(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv(paths.ENV_DATASET_SOURCE, raising=False)
    monkeypatch.delenv(paths.ENV_DATA_DIR, raising=False)


@pytest.fixture
def fake(tmp_path):
    return make_dataset(tmp_path / "src")


def assert_installed(result: FetchResult, dest_root: Path, action: str) -> None:
    assert result.action == action
    assert result.path == dest_root / NAME
    assert result.n_pairs == N_PAIRS
    assert (result.path / "Training_Images" / "1.jpg").is_file()
    assert (result.path / "Ground_Truth" / f"{N_PAIRS}.png").is_file()
    assert leftovers(dest_root) == [NAME]


def test_copy_from_local_folder(tmp_path, fake):
    folder, sha = fake
    dest_root = tmp_path / "raw"
    result = fetch_dataset(str(folder), dest_root, expected_sha256=sha, progress=False)
    assert_installed(result, dest_root, "copied")
    assert verify_dataset_dir(result.path, expected_sha256=sha) == N_PAIRS


def test_copy_from_parent_folder_with_other_name(tmp_path):
    _, sha = make_dataset(tmp_path / "parent", folder="my-copy")
    dest_root = tmp_path / "raw"
    result = fetch_dataset(tmp_path / "parent", dest_root, expected_sha256=sha, progress=False)
    assert_installed(result, dest_root, "copied")


def test_local_zip_master_master_then_already_present(tmp_path, fake):
    folder, sha = fake
    zip_path = make_zip(tmp_path / "master.zip", folder)
    dest_root = tmp_path / "raw"
    result = fetch_dataset(zip_path, dest_root, expected_sha256=sha, progress=False)
    assert_installed(result, dest_root, "extracted")
    again = fetch_dataset(zip_path, dest_root, expected_sha256=sha, progress=False)
    assert again.action == "already-present"
    assert again.n_pairs == N_PAIRS
    assert "nothing to do" in again.message


def test_source_from_env_and_default_dest(tmp_path, fake, monkeypatch):
    folder, sha = fake
    monkeypatch.setenv(paths.ENV_DATASET_SOURCE, str(folder))
    monkeypatch.setenv(paths.ENV_DATA_DIR, str(tmp_path / "envraw"))
    assert resolve_source() == str(folder)
    assert resolve_source("x.zip") == "x.zip"
    result = fetch_dataset(expected_sha256=sha, progress=False)
    assert_installed(result, tmp_path / "envraw", "copied")
    monkeypatch.delenv(paths.ENV_DATASET_SOURCE)
    assert resolve_source() == paths.DATASET_URL


def test_http_download(tmp_path, fake, server, capsys):
    folder, sha = fake
    httpd, base = server
    httpd.routes["/master.zip"] = (make_zip(tmp_path / "m.zip", folder).read_bytes(), True)
    dest_root = tmp_path / "raw"
    result = fetch_dataset(f"{base}/master.zip", dest_root, expected_sha256=sha, progress=True)
    assert_installed(result, dest_root, "downloaded")
    assert result.source == f"{base}/master.zip"


def test_http_download_without_content_length(tmp_path, fake, server):
    folder, sha = fake
    httpd, base = server
    httpd.routes["/master.zip"] = (make_zip(tmp_path / "m.zip", folder).read_bytes(), False)
    dest_root = tmp_path / "raw"
    result = fetch_dataset(f"{base}/master.zip", dest_root, expected_sha256=sha, progress=False)
    assert_installed(result, dest_root, "downloaded")


def test_http_404(tmp_path, server):
    _, base = server
    dest_root = tmp_path / "raw"
    with pytest.raises(DataError, match="HTTP 404") as err:
        fetch_dataset(f"{base}/missing.zip", dest_root, progress=False)
    assert paths.ENV_DATASET_SOURCE in str(err.value) and "--source" in str(err.value)
    assert leftovers(dest_root) == []


def test_connection_refused_and_timeout(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(DataError, match="download failed.*SEGLIB_DATASET_SOURCE"):
        fetch_dataset(f"http://127.0.0.1:{closed_port}/m.zip", tmp_path / "raw", progress=False)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/m.zip"
        with pytest.raises(DataError, match="download failed"):
            fetch_dataset(url, tmp_path / "raw", progress=False, timeout=0.3)
    assert leftovers(tmp_path / "raw") == []


def test_checksum_mismatch_leaves_nothing(tmp_path, fake, server):
    folder, _ = fake
    httpd, base = server
    httpd.routes["/master.zip"] = (make_zip(tmp_path / "m.zip", folder).read_bytes(), True)
    dest_root = tmp_path / "raw"
    with pytest.raises(DataError, match="train.csv: checksum mismatch"):
        fetch_dataset(f"{base}/master.zip", dest_root, progress=False)
    assert leftovers(dest_root) == []


@pytest.mark.parametrize("member", ["../evil.txt", f"{NAME}-master/../../../evil.txt", "/tmp/evil.txt"])
def test_zip_path_traversal_refused(tmp_path, fake, member):
    folder, sha = fake
    zip_path = make_zip(tmp_path / "evil.zip", folder, extra=[(zipfile.ZipInfo(member), b"pwned")])
    dest_root = tmp_path / "a" / "raw"
    with pytest.raises(DataError, match="outside the destination"):
        fetch_dataset(zip_path, dest_root, expected_sha256=sha, progress=False)
    assert not list(tmp_path.rglob("evil.txt"))
    assert leftovers(dest_root) == []


def test_zip_symlink_refused(tmp_path, fake):
    folder, sha = fake
    link = zipfile.ZipInfo(f"{NAME}-master/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zip_path = make_zip(tmp_path / "link.zip", folder, extra=[(link, b"/etc/passwd")])
    dest_root = tmp_path / "raw"
    with pytest.raises(DataError, match="symbolic link"):
        fetch_dataset(zip_path, dest_root, expected_sha256=sha, progress=False)
    assert leftovers(dest_root) == []


def test_zip_encrypted_refused(tmp_path, fake):
    folder, sha = fake
    zip_path = make_zip(tmp_path / "enc.zip", folder)
    data = bytearray(zip_path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        data[pos + 8] |= 0x1
        pos = data.find(b"PK\x01\x02", pos + 4)
    zip_path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="encrypted"):
        fetch_dataset(zip_path, tmp_path / "raw", expected_sha256=sha, progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_size_caps(tmp_path, fake, server):
    folder, sha = fake
    zip_path = make_zip(tmp_path / "m.zip", folder)
    unpacked = sum(i.file_size for i in zipfile.ZipFile(zip_path).infolist())
    dest_root = tmp_path / "raw"
    with pytest.raises(DataError, match="unpacks to .* limit"):
        fetch_dataset(zip_path, dest_root, expected_sha256=sha, progress=False, max_bytes=unpacked - 1)
    httpd, base = server
    httpd.routes["/with-length.zip"] = (zip_path.read_bytes(), True)
    httpd.routes["/no-length.zip"] = (zip_path.read_bytes(), False)
    small = zip_path.stat().st_size - 1
    for route in ("/with-length.zip", "/no-length.zip"):
        with pytest.raises(DataError, match="limit"):
            fetch_dataset(base + route, dest_root, expected_sha256=sha, progress=False, max_bytes=small)
    assert leftovers(dest_root) == []


def test_member_count_cap(tmp_path, fake):
    folder, _ = fake
    zip_path = make_zip(tmp_path / "m.zip", folder)
    with pytest.raises(DataError, match="members, over the limit"):
        fetch_mod.safe_extract_zip(zip_path, tmp_path / "out", max_members=3)


def test_missing_listed_file_named(tmp_path, fake):
    folder, sha = fake
    (folder / "Ground_Truth" / "2.png").unlink()
    with pytest.raises(DataError, match=r"1 of 6 listed files are missing: Ground_Truth/2\.png"):
        verify_dataset_dir(folder, expected_sha256=sha)
    dest_root = tmp_path / "raw"
    with pytest.raises(DataError, match=r"Ground_Truth/2\.png"):
        fetch_dataset(folder, dest_root, expected_sha256=sha, progress=False)
    assert leftovers(dest_root) == []


@pytest.mark.parametrize("bad", ["/etc/passwd", f"{NAME}/../../secret.png", "C:/x/y.png", "lonely.png"])
def test_unsafe_listed_paths_refused(tmp_path, bad):
    root = tmp_path / NAME
    root.mkdir()
    data = f"masks,images\n{bad},{NAME}/a.jpg\n".encode()
    (root / "train.csv").write_bytes(data)
    with pytest.raises(DataError, match=r"train\.csv:2: "):
        verify_dataset_dir(root, expected_sha256=hashlib.sha256(data).hexdigest())


def test_real_checksum_is_default(fake):
    folder, _ = fake
    with pytest.raises(DataError, match=paths.TRAIN_CSV_SHA256):
        verify_dataset_dir(folder)


def test_invalid_existing_destination_untouched(tmp_path, fake):
    folder, sha = fake
    dest = tmp_path / "raw" / NAME
    dest.mkdir(parents=True)
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists but is not a valid copy.*remove or rename it"):
        fetch_dataset(folder, tmp_path / "raw", expected_sha256=sha, progress=False)
    assert (dest / "notes.txt").read_text() == "mine"
    assert leftovers(tmp_path / "raw") == [NAME]


def test_bad_sources(tmp_path, fake):
    _, sha = fake
    (tmp_path / "notzip.zip").write_text("hello")
    make_dataset(tmp_path / "two", folder="a")
    make_dataset(tmp_path / "two", folder="b")
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "nope"): "source not found",
        str(tmp_path / "notzip.zip"): "not a zip file",
        str(tmp_path / "two"): "2 data set folders",
        str(tmp_path / "empty"): "no train.csv",
        "ftp://example.org/m.zip": "unsupported URL scheme",
    }
    for source, message in cases.items():
        with pytest.raises(DataError, match=message):
            fetch_dataset(source, tmp_path / "raw", expected_sha256=sha, progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_zip_without_dataset(tmp_path):
    zip_path = tmp_path / "other.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("repo/README.md", "hi")
    with pytest.raises(DataError, match="no train.csv"):
        fetch_dataset(zip_path, tmp_path / "raw", progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_interrupted_extraction_leaves_nothing(tmp_path, fake, monkeypatch):
    folder, sha = fake
    zip_path = make_zip(tmp_path / "m.zip", folder)
    real = fetch_mod.safe_extract_zip

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_mod, "safe_extract_zip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(zip_path, tmp_path / "raw", expected_sha256=sha, progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_real_dataset_copy(tmp_path):
    real = os.environ.get("SEGLIB_TEST_REAL_DATA")
    if not real or not (Path(real) / "train.csv").is_file():
        pytest.skip("set SEGLIB_TEST_REAL_DATA to a copy of the real data set folder")
    result = fetch_dataset(real, tmp_path / "raw", progress=False)
    assert result.action == "copied"
    assert result.n_pairs == 290
    assert fetch_dataset(real, tmp_path / "raw", progress=False).action == "already-present"


def test_fetch_never_writes_into_the_data_set_folder_it_copies_from(fake, tmp_path):
    src, sha = fake
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    with pytest.raises(SeglibError, match="is the source folder it copies from") as info:
        fetch_dataset(src, src, progress=False, expected_sha256=sha)
    assert "\n" not in str(info.value) and "--dest" in str(info.value)
    with pytest.raises(SeglibError, match="is inside .*, a data set folder"):
        fetch_dataset(make_zip(tmp_path / "d.zip", src), src / "Ground_Truth", progress=False, expected_sha256=sha)
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before


def test_fetch_pennfudan_never_writes_into_the_folder_it_copies_from(tmp_path):
    from test_data_external import make_pennfudan

    from seglib.data.external import fetch_pennfudan

    src = make_pennfudan(tmp_path / "src")
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    with pytest.raises(SeglibError, match="the Penn-Fudan folder it copies from"):
        fetch_pennfudan(src, src / "copy", progress=False)
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before
