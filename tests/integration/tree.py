"""A real ``runnerctl-manager run`` against the loopback GitHub, for the tree's tests.

``Manager`` writes the config, starts the command in a session of its own with the
test's folder as its working directory (so the session-wide leftover check and the
per-test reaper in tests/conftest.py find every worker and runner it leaves), and reads
back what the root publishes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runnerctl.sandbox import Sandbox
from runnerctl.supervisor.status import read_status
from tests.processes import alive, processes_under, wait_for

MANAGER = (sys.executable, "-m", "runnerctl.manager")
SLOW = 60.0  # generous: the machine is small and shared
#: What a cleanup meets when the process it aims at is already over.
GONE = (ProcessLookupError, PermissionError)


def github_section(double: Sandbox) -> str:
    """The config's ``github:`` section for the loopback GitHub ``double``."""
    return (
        "github:\n"
        f"  server_url: {double.server_url}\n"
        f"  api_url: {double.api_url}\n"
        f"  releases_url: {double.api_url}/repos/actions/runner/releases\n"
        f"  app_id: {double.app_id}\n"
        f"  installation_id: {double.installation_id}\n"
        f"  private_key_file: {double.private_key_file}\n"
    )


class PublishedStatus:
    """Reads what a root publishes in ``self.state`` (its state_dir)."""

    state: Path

    def status(self) -> dict[str, Any]:
        try:
            return read_status(self.state)
        except (OSError, ValueError):
            return {}

    def slots(self) -> dict[str, dict[str, Any]]:
        return {slot["name"]: slot for slot in self.status().get("slots", [])}

    def states(self) -> dict[str, str]:
        return {name: slot["state"] for name, slot in self.slots().items()}


class Manager(PublishedStatus):
    """One pool: its config file, its root process, its folders."""

    def __init__(self, folder: Path, sandbox: Sandbox) -> None:
        self.folder = folder
        self.sandbox = sandbox
        self.config = folder / "runnerctl.yaml"
        self.state = folder / "state"
        self.runners = folder / "runners"
        self.log = folder / "manager.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, runners: str, manager: str = "") -> None:
        """The config: ``runners`` is the YAML list's body, ``manager`` extra keys."""
        self.config.write_text(
            github_section(self.sandbox) + "manager:\n"
            f"  state_dir: {self.state}\n"
            f"  cache_dir: {self.folder / 'cache'}\n"
            "  interval: 1\n"
            "  janitor_interval: 600\n"
            f"{manager}"
            "defaults:\n"
            f"  base_dir: {self.runners}\n"
            f"runners:\n{runners}"
        )

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "RUNNER_ALLOW_RUNASROOT": "1",
        }
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*MANAGER, "run", "--config", str(self.config), "--log-level", "debug"],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float = SLOW) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill_everything(self) -> None:
        """SIGKILL the root, its workers and every runner under the test's folder."""
        if self.process is not None:
            with contextlib.suppress(*GONE):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(*GONE, subprocess.TimeoutExpired):
                self.process.wait(10)
        # A runner being started at this moment may appear after the first sweep.
        deadline = time.monotonic() + 10
        while (left := processes_under(self.folder)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(*GONE):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    # What the root publishes ------------------------------------------------------

    def all_in(self, *states: str, count: int) -> bool:
        now = self.states()
        return len(now) == count and all(state in states for state in now.values())

    def listeners(self) -> dict[str, list[int]]:
        """Live ``Runner.Listener`` processes per slot folder (from /proc)."""
        found: dict[str, list[int]] = {}
        for pid in processes_under(self.runners):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                continue
            if any(part.endswith(b"Runner.Listener") for part in cmd) and alive(pid):
                found.setdefault(cwd.name, []).append(pid)
        return found

    def online(self) -> dict[str, dict[str, Any]]:
        """The sandbox's online runners of this pool, by name."""
        return {r["name"]: r for r in self.sandbox.runners() if r["status"] == "online"}

    def registered(self) -> set[str]:
        return {r["name"] for r in self.sandbox.runners()}


def eventually(condition: Callable[[], Any], timeout: float = SLOW) -> Any:
    return wait_for(condition, timeout=timeout, interval=0.1)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
