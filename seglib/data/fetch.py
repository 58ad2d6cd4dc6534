"""Fetch the data set from a local folder, a local zip or an http(s) URL: verified, staged, then renamed into place."""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from tqdm.auto import tqdm

from seglib.data.catalog import enclosing_dataset_dir, listed_relative_path
from seglib.infra import paths
from seglib.infra.errors import DataError, SeglibError
from seglib.infra.io import NewFolder, refuse_writing_into
from seglib.infra.paths import user_path

DEFAULT_MAX_BYTES = 200 * 2**20
MAX_ZIP_MEMBERS = 10_000
DOWNLOAD_TIMEOUT_S = 60.0
ACTIONS = ("already-present", "copied", "extracted", "downloaded")

_CSV_NAME = "train.csv"
_CSV_COLUMNS = ("masks", "images")
_CHUNK = 2**20
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OFFLINE_HINT = (
    f"working offline? set {paths.ENV_DATASET_SOURCE} to a local copy (folder or .zip) or pass --source"
)


@dataclass(frozen=True)
class FetchResult:
    """What `fetch_dataset` did; `action` is one of ACTIONS."""

    path: Path
    action: str
    n_pairs: int
    source: str
    message: str


def resolve_source(source: str | os.PathLike | None = None) -> str:
    """The source to use: `source`, else $SEGLIB_DATASET_SOURCE, else the GitHub archive URL."""
    if source is not None and os.fspath(source).strip():
        return os.fspath(source).strip()
    return os.environ.get(paths.ENV_DATASET_SOURCE, "").strip() or paths.DATASET_URL


def verify_dataset_dir(
    path: str | os.PathLike, *, expected_sha256: str | None = paths.TRAIN_CSV_SHA256
) -> int:
    """Check train.csv's checksum and that every listed file exists; return the number of pairs.

    `expected_sha256=None` skips the checksum (the listed files are still checked).
    """
    return _verify(Path(path), expected_sha256, str(path))


def fetch_dataset(
    source: str | os.PathLike | None = None,
    dest_root: str | os.PathLike | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
    expected_sha256: str | None = paths.TRAIN_CSV_SHA256,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> FetchResult:
    """Put a verified copy of the data set at `dest_root / paths.DATASET_NAME` (default `paths.raw_data_dir()`).

    `source` is a data set folder (or a folder holding exactly one), a .zip file or an http(s) URL of a zip;
    default $SEGLIB_DATASET_SOURCE, else `paths.DATASET_URL`. `max_bytes` caps both the download and the
    unpacked size. Nothing is left behind on failure, and an existing destination is never overwritten.
    """
    src = resolve_source(source)
    dest_root = user_path(dest_root) if dest_root is not None else paths.raw_data_dir()
    dest = dest_root / paths.DATASET_NAME

    if dest.exists() or dest.is_symlink():
        try:
            n = verify_dataset_dir(dest, expected_sha256=expected_sha256)
        except DataError as exc:
            raise DataError(
                f"{dest} already exists but is not a valid copy of the data set ({exc}); "
                "remove or rename it, then fetch again"
            ) from None
        return FetchResult(
            dest,
            "already-present",
            n,
            src,
            f"{paths.DATASET_NAME} already present at {dest} ({n} image/mask pairs verified); nothing to do",
        )

    from_env = source is None or not os.fspath(source).strip()
    origin = f" (from {paths.ENV_DATASET_SOURCE})" if from_env and src != paths.DATASET_URL else ""
    kind, where = classify_source(src, origin=origin)
    refuse_fetch_into(dest_root, Path(where) if kind == "dir" else None, "the source folder it copies from")
    try:
        folder = NewFolder(dest_root)  # removed again if the fetch fails: a failed fetch leaves nothing
        work = Path(tempfile.mkdtemp(dir=dest_root, prefix=".fetch-"))
    except (OSError, SeglibError) as exc:
        raise DataError(f"{dest_root}: cannot create the data folder ({getattr(exc, 'strerror', None) or exc})") \
            from None
    ok = False

    try:
        if kind == "dir":
            src_root = _find_dataset_root(Path(where), str(where))
            listed = _verify(src_root, expected_sha256, str(src_root), return_files=True)
            staged = work / paths.DATASET_NAME
            _copy_files(src_root, staged, listed, progress)
            action, how, shown = "copied", f"copied from {src_root}", str(dest)
        else:
            zip_path = Path(where) if kind == "zip" else work / "download.zip"
            if kind == "url":
                size = download(where, zip_path, max_bytes=max_bytes, timeout=timeout, progress=progress)
                action, how = "downloaded", f"downloaded from {where} ({size / 2**20:.1f} MiB)"
            else:
                action, how = "extracted", f"extracted from {zip_path}"
            unpacked = work / "unpacked"
            safe_extract_zip(zip_path, unpacked, max_bytes=max_bytes, shown=src)
            staged = _find_dataset_root(unpacked, src)
            shown = src if staged == unpacked else f"{src}:{staged.relative_to(unpacked).as_posix()}"
        n = _verify(staged, expected_sha256, shown)
        if dest.exists() or dest.is_symlink():
            raise DataError(f"{dest}: appeared while fetching; left it untouched")
        os.rename(staged, dest)
        ok = True
    except OSError as exc:
        where_ = exc.filename or dest_root
        raise DataError(f"{where_}: fetch failed ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not ok:
            folder.rollback()
    return FetchResult(
        dest, action, n, src, f"{paths.DATASET_NAME}: {how} to {dest} ({n} image/mask pairs verified)"
    )


def refuse_fetch_into(dest_root: Path, source_dir: Path | None, description: str) -> None:
    """A fetch never writes into a data set folder, nor into the folder it copies from."""
    dataset = enclosing_dataset_dir(dest_root)
    refuse_writing_into(dest_root, [(source_dir, description), (dataset, "a data set folder")], option="--dest")


def safe_extract_zip(
    zip_path: str | os.PathLike,
    dest_dir: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = MAX_ZIP_MEMBERS,
    shown: str | None = None,
    select=None,
) -> int:
    """Extract a zip into `dest_dir`, refusing unsafe paths, links, encryption and oversized archives.

    Every member is checked before anything is written; returns the number of bytes written. `select` (member
    name -> bool): only the members it takes are checked and written, and count against the limits.
    """
    shown = shown or str(zip_path)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    base = dest_dir.resolve()
    written = 0
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = [i for i in zf.infolist() if select is None or select(i.filename)]
            if len(infos) > max_members:
                raise DataError(f"{shown}: {len(infos)} members, over the limit of {max_members} (refused)")
            declared = sum(info.file_size for info in infos)
            if declared > max_bytes:
                raise DataError(
                    f"{shown}: unpacks to {_mib(declared)}, over the {_mib(max_bytes)} limit (refused)"
                )
            plan = [(info, _member_target(base, info, shown)) for info in infos]
            for info, target in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DataError(f"{shown}: unpacks to over {_mib(max_bytes)} (refused)")
                        out.write(chunk)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{shown}: not a valid zip file or corrupt ({exc})") from None
    except (zlib.error, EOFError) as exc:
        raise DataError(f"{shown}: corrupt zip data ({exc})") from None
    except (NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{shown}: cannot unpack ({exc})") from None
    return written


def _member_target(base: Path, info: zipfile.ZipInfo, shown: str) -> Path:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(f"{shown}: member {name!r} is a symbolic link (refused)")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"{shown}: member {name!r} is a special file (refused)")
    if info.flag_bits & 0x1:
        raise DataError(f"{shown}: member {name!r} is encrypted (refused)")
    parts = re.split(r"[/\\]", name)
    outside = f"{shown}: member {name!r} would be written outside the destination (refused)"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or ".." in parts:
        raise DataError(outside)
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise DataError(outside)
    return target


def download(url: str, dest_file: Path, *, max_bytes: int, timeout: float, progress: bool) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": "seglib-fetch"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if total is not None and total > max_bytes:
                raise DataError(
                    f"{url}: download is {_mib(total)}, over the {_mib(max_bytes)} limit (refused)"
                )
            with (
                open(dest_file, "wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"downloading {paths.DATASET_NAME}",
                    disable=not progress,
                ) as bar,
            ):
                while chunk := resp.read(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise DataError(f"{url}: download exceeds the {_mib(max_bytes)} limit (refused)")
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(f"{url}: download failed (HTTP {exc.code} {exc.reason}); {_OFFLINE_HINT}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: download failed ({_reason(exc.reason)}); {_OFFLINE_HINT}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DataError(f"{url}: download failed ({_reason(exc)}); {_OFFLINE_HINT}") from None
    except ValueError as exc:
        raise DataError(f"{url}: not a usable URL ({exc})") from None
    if total is not None and received != total:
        raise DataError(f"{url}: download incomplete ({received} of {total} bytes); {_OFFLINE_HINT}")
    return received


def classify_source(src: str, *, origin: str = "") -> tuple[str, str | Path]:
    """('url', url) | ('dir', path) | ('zip', path), or DataError for anything else; `origin` says where the
    source came from in messages."""
    if _SCHEME_RE.match(src):
        scheme = src.split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            return "url", src
        raise DataError(
            f"{src}{origin}: unsupported URL scheme {scheme!r}; use http(s)://, a folder or a .zip file"
        )
    path = user_path(src)
    if path.is_dir():
        return "dir", path
    if path.is_file():
        if zipfile.is_zipfile(path):
            return "zip", path
        raise DataError(
            f"{path}{origin}: not a zip file; a source is a folder, a .zip file or an http(s) URL"
        )
    raise DataError(f"{path}{origin}: source not found; expected a folder, a .zip file or an http(s) URL")


def _find_dataset_root(folder: Path, shown: str) -> Path:
    """`folder` if it holds train.csv, else its single child that does."""
    if (folder / _CSV_NAME).is_file():
        return folder
    found = sorted(c for c in folder.iterdir() if c.is_dir() and (c / _CSV_NAME).is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{shown}: no {_CSV_NAME} in it or in a folder directly inside it (not {paths.DATASET_NAME})"
        )
    names = ", ".join(c.name for c in found)
    raise DataError(
        f"{shown}: holds {len(found)} data set folders ({names}); point the source at one of them"
    )


def _verify(root: Path, expected_sha256: str | None, shown: str, return_files: bool = False):
    """Pair count (or, with `return_files`, the relative paths of train.csv and every listed file)."""
    if not root.is_dir():
        raise DataError(f"{shown}: not a folder" if root.exists() else f"{shown}: folder not found")
    csv_path, csv_shown = root / _CSV_NAME, f"{shown}/{_CSV_NAME}"
    if not csv_path.is_file():
        raise DataError(f"{shown}: no {_CSV_NAME}; not a copy of {paths.DATASET_NAME}")
    if expected_sha256 is not None:
        with open(csv_path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != expected_sha256.lower():
            raise DataError(
                f"{csv_shown}: checksum mismatch (sha256 {digest}, expected {expected_sha256}); "
                f"not the expected version of {paths.DATASET_NAME}"
            )
    rel_files = _listed_files(csv_path, csv_shown)
    missing = [rel for rel in rel_files if not (root / rel).is_file()]
    if missing:
        first = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(f"{csv_shown}: {len(missing)} of {len(rel_files)} listed files are missing: {first}")
    n_pairs = len(rel_files) // len(_CSV_COLUMNS)
    return [_CSV_NAME, *rel_files] if return_files else n_pairs


def _listed_files(csv_path: Path, shown: str) -> list[str]:
    """Paths (relative to the data set folder, '/'-separated) of every file train.csv lists."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            if sorted(columns) != sorted(_CSV_COLUMNS):
                raise DataError(f"{shown}: columns {columns}, expected {list(_CSV_COLUMNS)}")
            reader.fieldnames = columns
            files = []
            for row in reader:
                for col in _CSV_COLUMNS:
                    files.append(listed_relative_path(row.get(col) or "", f"{shown}:{reader.line_num}"))
    except UnicodeDecodeError:
        raise DataError(f"{shown}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"{shown}: malformed CSV ({exc})") from None
    if not files:
        raise DataError(f"{shown}: lists no image/mask pairs")
    return files


def _copy_files(src_root: Path, dst_root: Path, rel_files: list[str], progress: bool) -> None:
    for rel in tqdm(rel_files, desc=f"copying {paths.DATASET_NAME}", unit="file", disable=not progress):
        target = dst_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_root / rel, target)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _reason(reason: object) -> str:
    return str(getattr(reason, "strerror", None) or reason) or type(reason).__name__
