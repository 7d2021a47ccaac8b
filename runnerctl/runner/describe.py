"""What a runner folder says about its runner, read from the host alone.

No GitHub call: the installed version from the install manifest, the registration
from ``.runner``, the listener from ``runner.pid`` (checked against /proc), and busy
or idle from a ``Runner.Worker`` process under it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runnerctl.distribution import installed_version
from runnerctl.runner.observe import worker_of
from runnerctl.runner.process import running_listener
from runnerctl.runner.register import local_registration, local_runner_id

RUNNER_MARKS = (".runner", "runner.pid", "runner.log", "bin")


@dataclass(frozen=True)
class RunnerState:
    """One runner folder at a glance."""

    name: str
    directory: str
    version: str | None
    runner_id: int | None
    url: str | None
    ephemeral: bool
    pid: int | None
    busy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "registered" if self.runner_id is not None else "stopped"
        return "busy" if self.busy else "idle"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


def describe(directory: Path) -> RunnerState:
    """The state of the runner in ``directory``."""
    registration = local_registration(directory) or {}
    listener = running_listener(directory)
    return RunnerState(
        name=directory.name,
        directory=str(directory),
        version=installed_version(directory),
        runner_id=local_runner_id(directory),
        url=registration.get("gitHubUrl"),
        ephemeral=bool(registration.get("ephemeral", False)),
        pid=listener.pid if listener else None,
        busy=listener is not None and worker_of(listener.pid) is not None,
    )


def runner_folders(base_dir: Path) -> list[Path]:
    """The folders under ``base_dir`` that hold a runner, by name."""
    if not base_dir.is_dir():
        return []
    return sorted(
        folder
        for folder in base_dir.iterdir()
        if folder.is_dir() and any((folder / mark).exists() for mark in RUNNER_MARKS)
    )
