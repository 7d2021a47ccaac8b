"""Downloads from hosts that misbehave, and a releases mirror, served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from runnerctl.config.models import GitHubSettings
from runnerctl.distribution import DownloadPolicy, RunnerCache, RunnerDownload, host_arch
from runnerctl.distribution.download import fetch
from runnerctl.distribution.versions import sha256_from_notes
from runnerctl.errors import DistributionError
from runnerctl.github import GitHub, Policy
from runnerctl.scope import Scope

ARCH = host_arch()
VERSION = "2.336.0"
NAME = f"actions-runner-linux-{ARCH}-{VERSION}.tar.gz"
BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()
FAST_DOWNLOAD = DownloadPolicy(timeout=10.0, attempts=3, backoff=0.05)
FAST_API = Policy(backoff=0.05, backoff_cap=0.2, read_timeout=10.0)


class Host(ThreadingHTTPServer):
    """A download host and releases mirror whose answers each test arranges."""

    def __init__(self, address: str) -> None:
        super().__init__((address, 0), _Handler)
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.short = False  # announce the whole body, send half, hang up

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> None:
        self.routes[path] = (status, body, headers)

    def release(self, notes_sha: str | None, digest: str | None) -> None:
        """Publish release v<VERSION> with the tarball as its only asset."""
        notes = f"## SHA-256 Checksums\n- {NAME} "
        if notes_sha:
            notes += f"<!-- BEGIN SHA linux-{ARCH} -->{notes_sha}<!-- END SHA linux-{ARCH} -->"
        asset = {
            "name": NAME,
            "browser_download_url": f"{self.url}/download/{NAME}",
            "url": f"{self.url}/assets/1",
            "id": 1,
            "size": len(BODY),
            "state": "uploaded",
            "digest": digest,
        }
        release = {"tag_name": f"v{VERSION}", "body": notes, "assets": [asset]}
        self.serve(f"/releases/tags/v{VERSION}", json.dumps(release).encode())
        self.serve(f"/download/{NAME}", BODY)


class _Handler(BaseHTTPRequestHandler):
    server: Host

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        status, body, headers = self.server.routes.get(self.path, (404, b"{}", {}))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.server.short and status == 200:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run(server: Host) -> Iterator[Host]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def host() -> Iterator[Host]:
    yield from _run(Host("127.0.0.1"))


@pytest.fixture
def other_host() -> Iterator[Host]:
    """A second host: same machine, another address, so clients treat it as foreign."""
    yield from _run(Host("127.0.0.2"))


def source(url: str, sha256: str = SHA, token: str | None = None) -> RunnerDownload:
    return RunnerDownload(version=VERSION, arch=ARCH, url=url, sha256=sha256, token=token)


def download(cache_dir: Path, item: RunnerDownload) -> Path:
    cache_dir.mkdir(exist_ok=True)
    with requests.Session() as session:
        return fetch(item, cache_dir, session, FAST_DOWNLOAD)


def test_a_download_token_goes_to_the_download_host_only(
    host: Host, other_host: Host, tmp_path: Path
) -> None:
    other_host.serve(f"/{NAME}", BODY)
    host.serve(f"/{NAME}", b"", status=302, Location=f"{other_host.url}/{NAME}")

    path = download(tmp_path, source(f"{host.url}/{NAME}", token="temp-download-token"))

    assert path.read_bytes() == BODY
    assert Path(f"{path}.sha256").read_text() == f"{SHA}  {NAME}\n"
    sent_first = host.seen[0][1]
    assert sent_first["authorization"] == "Bearer temp-download-token"
    assert sent_first["user-agent"].startswith("runnerctl/")
    assert "authorization" not in other_host.seen[0][1]


def test_a_body_cut_short_is_retried_and_nothing_is_kept(host: Host, tmp_path: Path) -> None:
    host.serve(f"/{NAME}", BODY)
    host.short = True

    with pytest.raises(DistributionError, match="failed 3 times"):
        download(tmp_path, source(f"{host.url}/{NAME}"))

    assert os.listdir(tmp_path) == []
    assert len(host.seen) == 3


def test_a_missing_file_is_not_retried(host: Host, tmp_path: Path) -> None:
    with pytest.raises(DistributionError, match="answered HTTP 404"):
        download(tmp_path, source(f"{host.url}/{NAME}?X-Amz-Signature=secret"))

    assert len(host.seen) == 1
    assert os.listdir(tmp_path) == []


def test_log_lines_and_errors_leave_out_signed_url_queries(
    host: Host, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host.serve(f"/{NAME}?sig=s3cr3t", BODY, status=503)
    caplog.set_level("DEBUG", logger="runnerctl")

    with pytest.raises(DistributionError) as raised:
        download(tmp_path, source(f"{host.url}/{NAME}?sig=s3cr3t", token="tok3n"))

    assert "s3cr3t" not in str(raised.value)
    assert "s3cr3t" not in caplog.text and "tok3n" not in caplog.text
    assert "retrying: " in caplog.text


def test_a_full_cache_disk_keeps_nothing(host: Host, tmp_path: Path) -> None:
    host.serve(f"/{NAME}", BODY)
    cache_dir = tmp_path / "tiny"
    cache_dir.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(cache_dir)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        # Not allowed to mount here: a file-size limit makes the write fail the same way.
        _download_under_file_size_limit(f"{host.url}/{NAME}", cache_dir)
        return
    try:
        with pytest.raises(DistributionError, match="No space left on device; free some space"):
            download(cache_dir, source(f"{host.url}/{NAME}"))
        assert os.listdir(cache_dir) == []
    finally:
        subprocess.run(["umount", "-l", str(cache_dir)], check=False)


def _download_under_file_size_limit(url: str, cache_dir: Path) -> None:
    script = (
        "import resource, signal, sys, requests; from pathlib import Path\n"
        "from runnerctl.distribution import DownloadPolicy, RunnerDownload\n"
        "from runnerctl.distribution.download import fetch\n"
        "from runnerctl.errors import DistributionError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        f"item = RunnerDownload({VERSION!r}, {ARCH!r}, {url!r}, {SHA!r})\n"
        "try:\n"
        f"    fetch(item, Path({str(cache_dir)!r}), requests.Session(), DownloadPolicy())\n"
        "except DistributionError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3, result.stderr
    assert "File too large; free some space" in result.stdout
    assert os.listdir(cache_dir) == []


# -- a releases mirror --------------------------------------------------------------------


def mirror_client(host: Host, tmp_path: Path) -> GitHub:
    """A client whose API host is unreachable and whose releases come from ``host``."""
    settings = GitHubSettings(
        api_url="http://127.0.0.1:9",
        server_url="http://127.0.0.1:9",
        releases_url=f"{host.url}/releases",
        token=SecretStr("ghp_manager_credential"),
    )
    return GitHub.from_settings(settings, tmp_path / "state", FAST_API)


@pytest.mark.parametrize(
    ("notes_sha", "digest"),
    [(SHA, f"sha256:{SHA}"), (SHA, None), (None, f"sha256:{SHA}")],
    ids=["notes and digest", "notes only", "digest only"],
)
def test_a_pinned_version_from_a_mirror(
    host: Host, tmp_path: Path, notes_sha: str | None, digest: str | None
) -> None:
    host.release(notes_sha, digest)
    cache = RunnerCache(tmp_path / "cache", mirror_client(host, tmp_path), policy=FAST_DOWNLOAD)

    tarball = cache.ensure(Scope("org", "octo"), VERSION)

    assert (tarball.sha256, tarball.path.read_bytes()) == (SHA, BODY)
    assert [path for path, _ in host.seen] == [
        f"/releases/tags/v{VERSION}",
        f"/download/{NAME}",
    ]
    assert all("authorization" not in headers for _, headers in host.seen)


def test_a_mirror_that_disagrees_with_itself_is_refused(host: Host, tmp_path: Path) -> None:
    host.release(SHA, "sha256:" + "0" * 64)
    cache = RunnerCache(tmp_path / "cache", mirror_client(host, tmp_path), policy=FAST_DOWNLOAD)

    with pytest.raises(DistributionError, match="publishes two SHA-256 values"):
        cache.ensure(Scope("org", "octo"), VERSION)
    assert [path for path, _ in host.seen] == [f"/releases/tags/v{VERSION}"]


def test_a_release_without_any_checksum_is_refused(host: Host, tmp_path: Path) -> None:
    host.release(None, None)
    cache = RunnerCache(tmp_path / "cache", mirror_client(host, tmp_path), policy=FAST_DOWNLOAD)

    with pytest.raises(DistributionError, match="publishes no SHA-256"):
        cache.ensure(Scope("org", "octo"), VERSION)


def test_checksum_markers_are_read_per_platform() -> None:
    body = (
        "- a <!-- BEGIN SHA linux-arm64 -->" + "a" * 64 + "<!-- END SHA linux-arm64 -->\n"
        "- b <!-- BEGIN SHA linux-x64 -->" + "B" * 64 + "<!-- END SHA linux-x64 -->\n"
    )
    assert sha256_from_notes(body, "x64") == "b" * 64
    assert sha256_from_notes(body, "arm64") == "a" * 64
    assert sha256_from_notes(body, "arm") is None


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "x64"), ("aarch64", "arm64"), ("armv7l", "arm")]
)
def test_machine_types_map_to_runner_architectures(machine: str, arch: str) -> None:
    assert host_arch(machine) == arch


def test_an_unsupported_machine_type_is_named() -> None:
    with pytest.raises(DistributionError, match="'riscv64'"):
        host_arch("riscv64")


# -- "latest" from a downloads list -------------------------------------------------------


def api_client(api: Host, tmp_path: Path) -> GitHub:
    """A client whose API (downloads list and releases) is ``api``, with a token."""
    settings = GitHubSettings(
        api_url=api.url,
        server_url=api.url,
        releases_url=f"{api.url}/releases",
        token=SecretStr("ghp_manager_credential"),
    )
    return GitHub.from_settings(settings, tmp_path / "state", FAST_API)


def serve_downloads_list(api: Host, download_host: Host, **extra: str) -> None:
    entry = {
        "os": "linux",
        "architecture": ARCH,
        "download_url": f"{download_host.url}/{NAME}",
        "filename": NAME,
        **extra,
    }
    api.serve("/repos/octo/app/actions/runners/downloads", json.dumps([entry]).encode())
    download_host.serve(f"/{NAME}", BODY)


def test_latest_sends_the_lists_download_token_and_not_the_managers(
    host: Host, other_host: Host, tmp_path: Path
) -> None:
    serve_downloads_list(host, other_host, sha256_checksum=SHA, temp_download_token="tdt-123")
    cache = RunnerCache(tmp_path / "cache", api_client(host, tmp_path), policy=FAST_DOWNLOAD)

    tarball = cache.ensure(Scope("repo", "octo/app"), "latest")

    assert (tarball.version, tarball.sha256) == (VERSION, SHA)
    assert "ghp_manager_credential" in host.seen[0][1]["authorization"]
    assert [headers["authorization"] for _, headers in other_host.seen] == ["Bearer tdt-123"]


def test_latest_without_a_listed_checksum_reads_the_release_notes(
    host: Host, other_host: Host, tmp_path: Path
) -> None:
    host.release(SHA, None)
    serve_downloads_list(host, other_host)
    cache = RunnerCache(tmp_path / "cache", api_client(host, tmp_path), policy=FAST_DOWNLOAD)

    tarball = cache.ensure(Scope("repo", "octo/app"), "latest")

    assert tarball.sha256 == SHA
    assert [path for path, _ in host.seen] == [
        "/repos/octo/app/actions/runners/downloads",
        f"/releases/tags/v{VERSION}",
    ]
    assert [path for path, _ in other_host.seen] == [f"/{NAME}"]


def test_latest_with_no_build_for_this_machine_is_named(
    host: Host, other_host: Host, tmp_path: Path
) -> None:
    serve_downloads_list(host, other_host, sha256_checksum=SHA)
    cache = RunnerCache(
        tmp_path / "cache",
        api_client(host, tmp_path),
        arch="arm" if ARCH != "arm" else "x64",
        policy=FAST_DOWNLOAD,
    )

    with pytest.raises(DistributionError, match=r"has no linux-\w+ build"):
        cache.ensure(Scope("repo", "octo/app"), "latest")
