"""Helpers (no tests): a loopback GitHub, a runner cache and slots for the runner tests.

Everything is real: the double serves HTTP on 127.0.0.1, the cache downloads and
verifies the stand-in runner's tarball, and the listener runs as a process of its own.
Each listener a test starts is killed with its whole process group afterwards.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path
from typing import Any

from runnerctl.config.models import GitHubSettings, Slot
from runnerctl.distribution import RunnerCache
from runnerctl.github import GitHub, Policy
from runnerctl.runner import Event, Runner, RunnerProcess
from runnerctl.sandbox import Sandbox
from runnerctl.scope import Scope

REPO = Scope("repo", "octo/app")
FAST = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)
SLOW = 45.0  # generous: the machine is small and shared
#: The manager's environment in these tests: credentials that must never reach a runner.
MANAGER_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LANG": "C.UTF-8",
    "LC_TIME": "C.UTF-8",
    "TZ": "UTC",
    "https_proxy": "http://proxy.invalid:3128",
    "NO_PROXY": "127.0.0.1,localhost",
    "RUNNER_ALLOW_RUNASROOT": "1",
    "GITHUB_TOKEN": "ghp_manager_secret_token_0001",
    "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----manager-----",
    "GITHUB_APP_ID": "4242",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "RUNNERCTL_CONFIG": "/etc/runnerctl/runnerctl.yaml",
}


class World:
    """One test's GitHub double, client, cache and runner folders."""

    def __init__(self, sandbox: Sandbox, folder: Path) -> None:
        self.sandbox = sandbox
        self.folder = folder
        self.settings = GitHubSettings(
            api_url=sandbox.api_url,
            server_url=sandbox.server_url,
            releases_url=f"{sandbox.api_url}/repos/actions/runner/releases",
            app_id=str(sandbox.app_id),
            private_key_file=sandbox.private_key_file,
        )
        self.github = GitHub.from_settings(self.settings, state_dir=folder / "state", policy=FAST)
        self.cache = RunnerCache(folder / "cache", github=self.github)
        self.started: list[RunnerProcess] = []

    def slot(self, name: str = "ci-1", **changes: Any) -> Slot:
        values: dict[str, Any] = {
            "name": name,
            "scope": REPO,
            "labels": ("linux", "test"),
            "version": "latest",
            "workdir": "_work",
            "ephemeral": False,
            "daemonize": False,
            "base_dir": self.folder / "runners",
            "runner_group": "Default",
            "registration": "token",
            "env": {"SLOT_SETTING": "from-the-slot"},
            "user": None,
        }
        values.update(changes)
        return Slot(**values)

    def runner(self, slot: Slot | None = None, environ: dict[str, str] | None = None) -> Runner:
        return Runner(
            slot or self.slot(),
            github=self.github,
            cache=self.cache,
            server_url=self.sandbox.server_url,
            environ=MANAGER_ENV if environ is None else environ,
        )

    def launch(self, runner: Runner) -> RunnerProcess:
        """Install, register and start; the listener is cleaned up after the test."""
        runner.install()
        return self.track(runner.start(runner.register()))

    def track(self, process: RunnerProcess) -> RunnerProcess:
        self.started.append(process)
        return process

    def job(self, duration: float = 0.5) -> int:
        return int(self.sandbox.enqueue_job(["self-hosted", "linux"], duration=duration)["id"])

    def runner_named(self, name: str) -> dict[str, Any] | None:
        found = [r for r in self.sandbox.runners() if r.get("name") == name]
        return found[0] if found else None

    def cleanup(self) -> None:
        for process in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ValueError):
                process.wait(10)
            process.close()
        self.github.close()


def events_until(process: RunnerProcess, want: type, timeout: float = SLOW) -> list[Event]:
    """Sleep on the events descriptor, as a worker does, until an event of type ``want``."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(event, want) for event in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {want.__name__} within {timeout}s; saw {seen}"
        select.select([process.events_fileno(), process.fileno()], [], [], remaining)
        seen.extend(process.read_events())
        if process.exit() is not None and not any(isinstance(e, want) for e in seen):
            raise AssertionError(f"runner exited ({process.exit()}) before {want.__name__}")
    return seen


def environ_of(pid: int) -> dict[str, str]:
    """A process's initial environment, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}
