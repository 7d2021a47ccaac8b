"""Shared pieces of the stand-in runner tests: unpacked runners, their environment, and
real processes that are always cleaned up by process group. Holds no tests itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runnerctl.sandbox.tarballs import LATEST, build_tarball
from tests.processes import alive, wait_for

# The venv's python first on PATH: `#!/usr/bin/env python3` then starts it directly
# instead of going through a slow version-manager shim.
PYTHON_BIN = str(Path(sys.executable).parent)


def runner_env(**extra: str) -> dict[str, str]:
    """A clean environment for the stand-in runner: no inherited ACTIONS_RUNNER_* inputs,
    RUNNER_ALLOW_RUNASROOT set (tests run as root), plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith("ACTIONS_RUNNER_") and key != "RUNNER_MANUALLY_TRAP_SIG"
    }
    env["PATH"] = f"{PYTHON_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["RUNNER_ALLOW_RUNASROOT"] = "1"
    env.update(extra)
    return env


def unpack(tarball: Path, destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(destination, filter="data")
    return destination


def build_latest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The latest x64 tarball, for a session-scoped fixture."""
    return build_tarball(LATEST, "x64", tmp_path_factory.mktemp("tarballs"))


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a runner command to completion and capture its output."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=runner_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class Started:
    """A long-running runner process in its own session; its output goes to a file."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        wait_for(lambda: text in self.output(), timeout=timeout)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def signal(self, number: int) -> None:
        os.kill(self.pid, number)

    def kill_group(self) -> None:
        """SIGKILL the whole process group, then reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


class Starter:
    """Starts runner processes for a test and kills every one of their groups afterwards."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Started] = []

    def __call__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Started:
        log = self.log_dir / f"process-{len(self.started)}.log"
        started = Started(argv, cwd, runner_env() if env is None else env, log)
        self.started.append(started)
        return started

    def __enter__(self) -> Starter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for started in self.started:
            started.kill_group()


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and alive(int(entry)):
            found.append(int(entry))
    return found


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return [part.decode() for part in handle.read().split(b"\0") if part]


def environ_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        pairs = [part.decode().partition("=") for part in handle.read().split(b"\0") if part]
    return {key: value for key, _, value in pairs}


def find_listener(root_pid: int) -> int | None:
    """The Runner.Listener process at or below ``root_pid`` (run.sh, run-helper.sh, ...)."""
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        try:
            if any(part.endswith("bin/Runner.Listener") for part in cmdline(pid)):
                return pid
        except OSError:
            continue
        pending.extend(children_of(pid))
    return None


def read_runner_file(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def github(api_url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """One REST call against the double with a plain token."""
    request = urllib.request.Request(
        api_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"token {token}",
            "User-Agent": "runnerctl-tests",
            "Accept": "application/vnd.github+json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None
