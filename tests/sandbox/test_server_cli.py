"""``python -m runnerctl.sandbox serve`` as a real process: one JSON line, then serving
until SIGINT or SIGTERM, then exit 0 with nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runnerctl.sandbox import Sandbox, app_key
from tests.processes import alive, terminate, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """The serve command in its own process group, killed at the end whatever happened."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runnerctl.sandbox",
            "serve",
            "--repo",
            "octo/app",
            "--org",
            "octo",
            "--enterprise",
            "acme",
            "--root",
            str(tmp_path / "root"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            terminate(-process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_one_json_line_and_stops_cleanly(
    serve: subprocess.Popen[str], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    assert serve.stdout is not None
    info = json.loads(serve.stdout.readline())
    assert set(info) == {
        "api_url",
        "server_url",
        "app_id",
        "installation_id",
        "private_key_file",
        "token",
        "admin_url",
    }
    key = Path(info["private_key_file"])
    assert key.parent == tmp_path / "root"
    assert key.stat().st_mode & 0o777 == 0o600
    assert info["token"].startswith("ghp_")
    runners = requests.get(
        info["api_url"] + "/api/v3/repos/octo/app/actions/runners",
        headers={"Authorization": f"token {info['token']}"},
        timeout=30,
    )
    assert runners.json() == {"total_count": 0, "runners": []}
    assert requests.get(info["admin_url"] + "/settings", timeout=30).status_code == 200
    os.kill(serve.pid, stop_signal)
    assert serve.wait(timeout=30) == 0
    assert serve.stdout.read() == ""
    wait_for(lambda: not alive(serve.pid), timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(info["api_url"] + "/rate_limit", timeout=5)


def test_serve_refuses_a_taken_port(serve: subprocess.Popen[str], tmp_path: Path) -> None:
    assert serve.stdout is not None
    port = json.loads(serve.stdout.readline())["server_url"].rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "runnerctl.sandbox", "serve", "--port", port],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert f"127.0.0.1:{port}" in second.stderr
    assert "Traceback" not in second.stderr


def test_the_sandbox_starts_and_stops_quickly(tmp_path: Path) -> None:
    app_key()  # made once per process; every later sandbox reuses it
    started = time.monotonic()
    with Sandbox(root=tmp_path / "quick") as sandbox:
        assert time.monotonic() - started < 1.0
        assert requests.get(sandbox.api_url + "/rate_limit", timeout=30).status_code == 200
    assert time.monotonic() - started < 2.0
    with pytest.raises(requests.ConnectionError):
        requests.get(sandbox.api_url + "/rate_limit", timeout=5)
