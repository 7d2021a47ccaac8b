"""What the root remembers about each child, and about its config file.

Plain records: the root's steps change them, nothing here acts on a process.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from runnerctl.supervisor.channel import Channel, Report
from runnerctl.supervisor.intensity import RestartIntensity
from runnerctl.supervisor.plan import Retirement
from runnerctl.supervisor.protocols import SlotSettings
from runnerctl.supervisor.states import SlotState


@dataclass
class WorkerRecord:
    """One slot's worker as the root tracks it, alive or waiting to be restarted."""

    slot: SlotSettings
    intensity: RestartIntensity
    process: BaseProcess | None = None
    channel: Channel | None = None
    started: float = 0.0  # monotonic, when the current worker was forked
    report: Report = field(default_factory=Report)
    retiring: Retirement | None = None
    successor: SlotSettings | None = None  # the new settings a replacement starts with
    restart_at: float | None = None  # monotonic; a restart waits in backoff until then
    restarts: int = 0  # workers forked after the first one
    stop_sent: str | None = None  # the stop mode already sent, if any
    updating: bool = False  # told to move to a newer runner version
    notice: str = ""
    last_worker_exit: int | None = None

    @property
    def name(self) -> str:
        return self.slot.name

    @property
    def alive(self) -> bool:
        """Whether a worker process exists for the slot (not yet reaped)."""
        return self.process is not None

    @property
    def state(self) -> SlotState:
        """The slot's state: the worker's report, or the root's own view between workers."""
        if self.process is None:
            return SlotState.BACKOFF if self.restart_at is not None else SlotState.STOPPED
        try:
            return SlotState(self.report.state)
        except ValueError:
            return SlotState.STARTING

    def describe(self, wall_offset: float) -> dict[str, Any]:
        """This slot's row of ``status.json``; ``wall_offset`` turns monotonic into epoch."""
        report = self.report
        retry_at = report.retry_at
        if self.process is None and self.restart_at is not None:
            retry_at = self.restart_at + wall_offset
        return {
            "name": self.name,
            "state": str(self.state),
            "reason": report.reason,
            "worker_pid": self.process.pid if self.process is not None else None,
            "runner_pid": report.runner_pid,
            "runner_id": report.runner_id,
            "runner_started": report.runner_started,
            "runner_version": report.runner_version,
            "busy": report.busy,
            "jobs_done": report.jobs_done,
            "restarts": report.restarts + self.restarts,
            "worker_restarts": self.restarts,
            "last_exit": report.last_exit,
            "last_worker_exit": self.last_worker_exit,
            "retry_at": retry_at if self.state == SlotState.BACKOFF else None,
            "retiring": self.retiring,
            "ephemeral": self.slot.ephemeral,
            "daemonize": self.slot.daemonize,
            "notice": self.notice,
        }


@dataclass(frozen=True)
class Seen:
    """A config file's stamp (mtime, size) and content hash at one moment."""

    stamp: tuple[int, int]
    digest: str


class ConfigFile:
    """Notices when the config file's content changed since it was last loaded.

    The modification time is checked first (cheap); the content hash decides, so a
    ``touch`` or a rewrite with the same text does not count as a change. The root
    takes a ``snapshot()`` *before* it parses the file and records that one: a file
    replaced while it was being loaded then still counts as changed, and is loaded
    again at the next reconcile, instead of being taken for what was applied.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._digest = ""

    def changed(self) -> bool:
        """Whether the file differs from the last ``mark_loaded``; no change if unreadable."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return False
        seen = self.snapshot()
        if seen is None or seen.digest == self._digest:
            self._stamp = stamp  # touched, not changed
            return False
        return True

    def snapshot(self) -> Seen | None:
        """The file as it is now; take it before loading. None when unreadable."""
        try:
            stat = os.stat(self.path)
            content = self.path.read_bytes()
        except OSError:
            return None
        return Seen((stat.st_mtime_ns, stat.st_size), hashlib.sha256(content).hexdigest())

    def mark_loaded(self, seen: Seen | None) -> None:
        """Remember ``seen``, the snapshot taken before the load, as applied."""
        if seen is not None:
            self._stamp, self._digest = seen.stamp, seen.digest


def wall_offset() -> float:
    """Add to a monotonic time to get epoch seconds."""
    return time.time() - time.monotonic()


class JanitorSlot:
    """Stands in for a slot in the janitor's record (it has no runner)."""

    name = "janitor"
    version = ""
    ephemeral = False
    daemonize = False
    directory = Path("/")

    def fingerprint(self) -> str:
        return ""


def in_order(records: dict[str, WorkerRecord], order: list[str]) -> dict[str, WorkerRecord]:
    """The records in config order, retiring ones (no longer in the config) last."""
    rank = {name: index for index, name in enumerate(order)}
    return dict(sorted(records.items(), key=lambda item: rank.get(item[0], len(rank))))
