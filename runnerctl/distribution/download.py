"""Fetch one runner tarball into the cache: stream, verify, and only then rename into place.

The bytes go to a temporary file inside the cache folder, so the final rename is atomic
and a reader never sees half a tarball. The SHA-256 is computed while streaming; on a
mismatch the temporary file is removed and nothing else changes. A ``.sha256`` file in
``sha256sum`` format is written beside every tarball, so an operator can check it by
hand and an air-gapped host can be seeded the same way.

The manager's GitHub credentials are never sent here: download hosts are not the API
host. The only credential is the short-lived token the downloads endpoint may hand out
for exactly this URL, and requests drops it if a redirect leaves that host.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import requests
import urllib3

from runnerctl import __version__
from runnerctl.distribution.versions import RunnerDownload, normalize_sha256
from runnerctl.errors import ChecksumMismatch, DistributionError

log = logging.getLogger(__name__)

USER_AGENT = f"runnerctl/{__version__}"
_CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class DownloadPolicy:
    """How patient a download is: per-read timeout, attempts, and the first retry delay."""

    timeout: float = 60.0
    attempts: int = 3
    backoff: float = 1.0


class _Retryable(Exception):
    """A failure another attempt may not meet: a dropped connection, a 5xx, a short body."""


def fetch(
    source: RunnerDownload,
    cache_dir: Path,
    session: requests.Session,
    policy: DownloadPolicy,
) -> Path:
    """Download ``source`` into ``cache_dir`` and return the verified tarball's path."""
    where = safe_url(source.url)
    for attempt in range(1, policy.attempts + 1):
        try:
            return _fetch_once(source, cache_dir, session, policy.timeout)
        except _Retryable as error:
            if attempt == policy.attempts:
                raise DistributionError(
                    f"download of {source.filename} from {where} failed {attempt} times, "
                    f"last: {error}; check that the host is reachable"
                ) from None
            delay = policy.backoff * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
            log.warning(
                "retrying: %s from %s (attempt %d of %d failed: %s; next in %.1fs)",
                source.filename,
                where,
                attempt,
                policy.attempts,
                error,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _fetch_once(
    source: RunnerDownload, cache_dir: Path, session: requests.Session, timeout: float
) -> Path:
    """One attempt: stream to a temporary file, verify, rename into place."""
    final = cache_dir / source.filename
    fd, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{source.filename}.", suffix=".part")
    temp = Path(temp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _stream(source, out, session, timeout)
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            # _stream turns network errors into _Retryable; what remains is the disk.
            raise disk_error(error, f"writing {source.filename} into {cache_dir}") from None
        if actual != source.sha256:
            raise ChecksumMismatch(
                f"{source.filename} from {safe_url(source.url)} has SHA-256 {actual}, "
                f"not the published {source.sha256}; nothing was kept "
                "(a corrupt download or mirror: retry, or check releases_url)"
            )
        os.replace(temp, final)
        write_checksum_file(final, source.sha256)
        fsync_folder(cache_dir)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    log.info("downloaded: %s (sha256 %s)", source.filename, source.sha256)
    return final


def _stream(
    source: RunnerDownload, out: BinaryIO, session: requests.Session, timeout: float
) -> str:
    """Copy the response body into ``out`` and return its SHA-256."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if source.token:
        headers["Authorization"] = f"Bearer {source.token}"
    digest = hashlib.sha256()
    received = 0
    try:
        with session.get(source.url, headers=headers, stream=True, timeout=timeout) as response:
            _check_status(source, response)
            length = response.headers.get("Content-Length")
            for chunk in response.raw.stream(_CHUNK, decode_content=False):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
        raise _Retryable(type(error).__name__) from None
    if length is not None and length.isdigit() and received != int(length):
        raise _Retryable(f"body cut short at {received} of {length} bytes")
    return digest.hexdigest()


def _check_status(source: RunnerDownload, response: requests.Response) -> None:
    """Raise for any answer but 200: retryable for 5xx and 429, final otherwise."""
    if response.status_code == 200:
        return
    if response.status_code in _RETRY_STATUSES:
        raise _Retryable(f"HTTP {response.status_code}")
    raise DistributionError(
        f"download of {source.filename} from {safe_url(source.url)} answered "
        f"HTTP {response.status_code}; check the URL or the mirror"
    )


def disk_error(error: OSError, doing: str) -> DistributionError:
    """A one-line error for a failed write, with the fix for a full disk."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DistributionError(f"{doing}: {error.strerror}; free some space and retry")
    return DistributionError(f"{doing}: {error.strerror or error}")


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_path(tarball: Path) -> Path:
    """Where a tarball's ``.sha256`` lives: beside it, with ``.sha256`` appended."""
    return tarball.with_name(tarball.name + ".sha256")


def read_checksum_file(tarball: Path) -> str | None:
    """The digest from a tarball's ``.sha256`` (``<hex>`` or ``<hex>  <name>``); None if absent."""
    path = checksum_path(tarball)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    words = text.split()
    digest = normalize_sha256(words[0]) if words else None
    if digest is None:
        raise DistributionError(
            f"{path} does not start with a SHA-256 in hex; write it as `sha256sum` does"
        )
    return digest


def write_checksum_file(tarball: Path, sha256: str) -> None:
    """Write ``<hex>  <name>`` beside ``tarball``, atomically."""
    path = checksum_path(tarball)
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        temp.write_text(f"{sha256}  {tarball.name}\n", encoding="utf-8")
        os.replace(temp, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise disk_error(error, f"writing {path}") from None


def fsync_folder(folder: Path) -> None:
    """Make renames inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def safe_url(url: str) -> str:
    """``url`` without its query or credentials, fit for a log line (signed URLs carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"
