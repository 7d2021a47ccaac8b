"""The soak's pool: its configurations, and a manager whose config flips atomically.

Three item kinds share one repository: ephemeral runners registered just in time
(``jit-N``, not daemonized), ephemeral runners registered with a token (``tok-N``,
daemonized), and one persistent runner (``keep``, daemonized). The configurations
differ only in counts, so a flip scales items up and down, and one of them removes
the persistent runner altogether.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runnerctl.sandbox import Sandbox
from tests.integration.tree import Manager, github_section

REPO = "octo/app"
LABELS = ("self-hosted", "linux", "chaos")
#: The manager's drain bound on SIGTERM; jobs are far shorter.
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class PoolShape:
    """How many slots each item has; ``keep`` is the one persistent runner."""

    jit: int
    tok: int
    keep: bool

    @property
    def names(self) -> frozenset[str]:
        names = {f"jit-{n}" for n in range(1, self.jit + 1)}
        names |= {f"tok-{n}" for n in range(1, self.tok + 1)}
        return frozenset(names | ({"keep"} if self.keep else set()))

    @property
    def daemonized(self) -> frozenset[str]:
        return frozenset(name for name in self.names if not name.startswith("jit-"))

    @property
    def persistent(self) -> frozenset[str]:
        return frozenset({"keep"} if self.keep else set())

    @property
    def size(self) -> int:
        return len(self.names)

    def label(self) -> str:
        return f"jit {self.jit}, tok {self.tok}, keep {int(self.keep)}"

    def runners_yaml(self) -> str:
        labels = ", ".join(LABELS)
        lines = [
            f"  - {{name_prefix: jit, count: {self.jit}, repo: {REPO}, ephemeral: true,"
            f" registration: jit, daemonize: false, labels: [{labels}]}}",
            f"  - {{name_prefix: tok, count: {self.tok}, repo: {REPO}, ephemeral: true,"
            f" registration: token, daemonize: true, labels: [{labels}]}}",
        ]
        if self.keep:
            lines.append(
                f"  - {{name: keep, repo: {REPO}, ephemeral: false, registration: token,"
                f" daemonize: true, labels: [{labels}]}}"
            )
        return "\n".join(lines) + "\n"


#: The largest shape first: the soak starts and ends with it (six slots).
SHAPES = (
    PoolShape(jit=3, tok=2, keep=True),
    PoolShape(jit=1, tok=1, keep=True),
    PoolShape(jit=2, tok=2, keep=False),
    PoolShape(jit=3, tok=1, keep=True),
)
FULL = SHAPES[0]

#: Housekeeping (ghost removal) often enough to run several times in a short soak.
JANITOR_INTERVAL = 10.0


class SoakManager(Manager):
    """A ``runnerctl-manager run`` whose config is replaced in one rename."""

    def __init__(self, folder: Path, sandbox: Sandbox) -> None:
        super().__init__(folder, sandbox)
        self.shape = FULL
        self.starts = 0

    def apply(self, shape: PoolShape) -> None:
        """Write ``shape`` next to the config and rename it over the config."""
        text = (
            github_section(self.sandbox) + "manager:\n"
            f"  state_dir: {self.state}\n"
            f"  cache_dir: {self.folder / 'cache'}\n"
            "  interval: 1\n"
            f"  janitor_interval: {JANITOR_INTERVAL:g}\n"
            f"  stop_timeout: {STOP_TIMEOUT:g}\n"
            "  update_check_interval: 3600\n"
            "defaults:\n"
            f"  base_dir: {self.runners}\n"
            f"runners:\n{shape.runners_yaml()}"
        )
        fresh = self.config.with_name(".runnerctl.yaml.new")
        fresh.write_text(text, encoding="utf-8")
        os.replace(fresh, self.config)
        self.shape = shape

    def start(self) -> None:
        self.starts += 1
        super().start()

    def listeners(self) -> dict[str, list[int]]:
        """Live listeners per slot folder. A listener starts each job's
        ``Runner.Worker`` with fork and exec, and between the two the child still
        reads as a listener: a "listener" whose parent is a listener is that child."""
        found = super().listeners()
        every = {pid for pids in found.values() for pid in pids}
        return {
            name: kept
            for name, pids in found.items()
            if (kept := [pid for pid in pids if parent(pid) not in every])
        }

    def ready(self) -> bool:
        """Whether the current root published its status: its signal handlers are in
        place (systemd, too, reloads a notify service only once it is ready)."""
        root = self.status().get("root", {})
        return self.running() and root.get("pid") == self.pid and root.get("phase") == "running"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self, timeout: float) -> int | None:
        """The root's exit code once it ended within ``timeout``; None if it runs on."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def parent(pid: int) -> int | None:
    """The parent pid of ``pid``, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])
