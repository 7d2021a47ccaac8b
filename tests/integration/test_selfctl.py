"""``self-runner-ctl`` as an operator runs it: a real command against the loopback GitHub.

Credentials reach it the way they reach the manager (``GITHUB_TOKEN``,
``GITHUB_SERVER_URL``, ``GHWFAX__MANAGER__*`` overrides). Every command runs with the
test's folder as its working directory, in a session of its own, so the per-test reaper
finds whatever it leaves behind; the runners it starts are killed by process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.runner import pidfile
from runnerctl.sandbox import Sandbox
from tests.processes import alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SLOW = 60.0


class Operator:
    """Runs ``self-runner-ctl`` with a clean environment pointing at the double."""

    def __init__(self, sandbox: Sandbox, folder: Path) -> None:
        self.sandbox = sandbox
        self.folder = folder
        self.base = folder / "runners"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(folder),
            "GITHUB_SERVER_URL": sandbox.server_url,
            "GITHUB_API_URL": sandbox.api_url,
            "GITHUB_TOKEN": sandbox.token,
            "GHWFAX__MANAGER__CACHE_DIR": str(folder / "cache"),
            "GHWFAX__MANAGER__STATE_DIR": str(folder / "state"),
            "RUNNERCTL_CONFIG": str(folder / "absent.yaml"),
            "RUNNER_ALLOW_RUNASROOT": "1",
        }
        self.runner_pids: list[int] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "runnerctl.selfctl", *args, "--base-dir", str(self.base)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=SLOW,
            start_new_session=True,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def listener(self, name: str) -> int:
        entry = wait_for(lambda: pidfile.read(self.base / name / "runner.pid"), timeout=SLOW)
        self.runner_pids.append(entry.pid)
        return entry.pid

    def cleanup(self) -> None:
        for pid in self.runner_pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def operator(sandbox: Sandbox, tmp_path: Path) -> Iterator[Operator]:
    made = Operator(sandbox, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def test_daemonize_status_and_remove(operator: Operator) -> None:
    done = operator.run("register", "--repo", "octo/app", "--name", "hand-1", "--daemonize")
    assert done.returncode == 0, done.stderr
    assert "online: hand-1" in done.stdout
    pid = operator.listener("hand-1")
    assert alive(pid) and os.getsid(pid) == pid  # outlives the command, in its own session
    assert operator.sandbox.token not in done.stdout + done.stderr

    table = operator.run("status")
    assert table.returncode == 0 and "hand-1" in table.stdout and "idle" in table.stdout
    job = operator.sandbox.enqueue_job(["self-hosted"], duration=0.5)["id"]
    operator.sandbox.wait_for_job(job, "succeeded", timeout=SLOW)

    [state] = json.loads(operator.run("status", "--name", "hand-1", "--json").stdout)
    assert state["pid"] == pid and state["runner_id"] is not None and not state["ephemeral"]

    removed = operator.run("remove", "--name", "hand-1")
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: not alive(pid), timeout=SLOW)
    assert [r for r in operator.sandbox.runners() if r["name"] == "hand-1"] == []
    assert not (operator.base / "hand-1" / ".runner").exists()


def test_remove_waits_for_the_running_job(operator: Operator) -> None:
    done = operator.run("register", "--repo", "octo/app", "--name", "hand-2", "--daemonize")
    assert done.returncode == 0, done.stderr
    operator.listener("hand-2")
    job = operator.sandbox.enqueue_job(["self-hosted"], duration=3)["id"]
    operator.sandbox.wait_for_job(job, "running", timeout=SLOW)
    removed = operator.run("remove", "--name", "hand-2")
    assert removed.returncode == 0, removed.stderr
    assert "waiting: hand-2" in removed.stdout
    assert operator.sandbox.job(job)["status"] == "succeeded"


def test_foreground_until_ctrl_c(operator: Operator) -> None:
    command = operator.start("register", "--repo", "octo/app", "--name", "hand-3", "--foreground")
    try:
        pid = operator.listener("hand-3")
        job = operator.sandbox.enqueue_job(["self-hosted"], duration=60)["id"]
        log = operator.base / "hand-3" / "runner.log"
        wait_for(lambda: "Running job" in log.read_text(), timeout=SLOW)
        os.kill(command.pid, signal.SIGINT)  # what Ctrl-C sends the foreground command
        output, _ = command.communicate(timeout=SLOW)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, output
    assert "busy: hand-3" in output and "stopping: hand-3" in output
    assert "finished job" in output and "(Canceled)" in output
    assert not alive(pid)
    assert operator.sandbox.job(job)["status"] == "cancelled"


def test_foreground_ephemeral_ends_after_its_job(operator: Operator) -> None:
    command = operator.start("register", "--repo", "octo/app", "--name", "hand-4", "--ephemeral")
    try:
        operator.listener("hand-4")
        operator.sandbox.enqueue_job(["self-hosted"], duration=0.5)
        output, _ = command.communicate(timeout=SLOW)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, output
    assert "jit registration" in output and "exited: hand-4" in output


def test_errors_are_one_line(operator: Operator) -> None:
    missing = operator.run("register", "--repo", "octo/app")
    assert missing.returncode != 0 and "--name" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = operator.run("register", "--repo", "not a repo", "--name", "x", "--daemonize")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "--repo: 'not a repo' is not owner/repo"
    unknown = operator.run("remove", "--name", "never-registered")
    assert unknown.returncode != 0 and "--repo" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_daemonize_reports_a_runner_that_cannot_come_online(operator: Operator) -> None:
    operator.sandbox.configure(deprecated_versions=["2.336.0"])
    done = operator.run("register", "--repo", "octo/app", "--name", "hand-5", "--daemonize")
    assert done.returncode == 1
    assert "deprecated" in done.stdout and "latest" in done.stdout
    assert "last lines of" in done.stdout and "is deprecated" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
