"""How the root ends its pool: drain on SIGTERM, stop now on SIGINT, kill past deadlines.

The steps live apart from the running loop in ``root.py`` so that each file reads as
one job; ``Root`` mixes them in and owns the state they act on, declared below.
Deadlines only ever move the stop forward: draining, then stopping, then killing.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import wait

from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.protocols import PoolConfig
from runnerctl.supervisor.records import WorkerRecord
from runnerctl.systemd import Notifier

log = logging.getLogger(__name__)

#: The longest a stop-now may take before the root kills what is left.
KILL_GRACE = 10.0
JANITOR = "janitor"


class Phase(str, enum.Enum):
    """The root's own life: running, then draining (SIGTERM) or stopping (SIGINT)."""

    RUNNING = "running"
    DRAINING = "draining"
    STOPPING = "stopping"
    KILLING = "killing"
    STOPPED = "stopped"


class Stopping:
    """The root's stopping steps (mixed into ``Root``)."""

    records: dict[str, WorkerRecord]
    janitor: WorkerRecord
    config: PoolConfig
    notifier: Notifier
    clock: Callable[[], float]
    phase: Phase
    drain_deadline: float | None
    final_deadline: float | None

    def drain(self) -> None:
        """SIGTERM: let running jobs finish, bounded by stop_timeout, then stop."""
        timeout = float(self.config.manager.stop_timeout)
        grace = min(KILL_GRACE, timeout / 3)
        self.phase = Phase.DRAINING
        self.drain_deadline = self.clock() + timeout - grace
        self.final_deadline = self.clock() + timeout
        self.notifier.stopping()
        log.info("draining: %d slots (stop_timeout %.0fs)", len(self.records), timeout)
        self.forget_waiting()
        for record in self.records.values():
            daemonized = record.slot.daemonize
            self.send_stop(
                record,
                msg.Stop(
                    mode="detach" if daemonized else "drain",
                    deregister=record.slot.ephemeral and not daemonized,
                ),
            )
        self.stop_janitor()

    def stop(self, detach_daemonized: bool) -> None:
        """SIGINT (or a drain past its deadline): stop every runner now."""
        if self.phase == Phase.RUNNING:
            self.notifier.stopping()
            self.final_deadline = self.clock() + KILL_GRACE
        self.phase = Phase.STOPPING
        self.drain_deadline = None
        log.info("stopping: %d slots now", len(self.records))
        self.forget_waiting()
        for record in self.records.values():
            detach = detach_daemonized and record.slot.daemonize
            mode: msg.StopMode = "detach" if detach else "now"
            if record.stop_sent not in (mode, "detach"):
                self.send_stop(record, msg.Stop(mode=mode, deregister=record.slot.ephemeral))
        self.stop_janitor()

    def kill(self) -> None:
        """Past every deadline: SIGKILL the workers and their non-daemonized runners."""
        self.phase = Phase.KILLING
        self.final_deadline = None
        for record in [*self.records.values(), self.janitor]:
            if record.process is None or record.process.pid is None:
                continue
            log.error("killing: %s (pid %d)", self.label(record), record.process.pid)
            _kill(record.process.pid, os.kill)
            runner = record.report.runner_pid
            if runner and not record.slot.daemonize and record.stop_sent != "detach":
                _kill(runner, os.killpg)

    def abandon(self) -> None:
        """The loop itself failed: stop the children within KILL_GRACE, then kill them.

        Without this, the interpreter's exit would wait for the workers forever.
        """
        self.stop(detach_daemonized=True)
        deadline = self.clock() + KILL_GRACE
        children = [r for r in [*self.records.values(), self.janitor] if r.process is not None]
        while children and self.clock() < deadline:
            wait([r.process.sentinel for r in children if r.process], deadline - self.clock())
            children = [r for r in children if r.process and r.process.is_alive()]
        self.kill()
        for record in children:
            if record.process is not None:
                record.process.join(5)

    def enforce_deadlines(self) -> None:
        """Move from draining to stopping to killing as the deadlines pass."""
        now = self.clock()
        if self.drain_deadline is not None and now >= self.drain_deadline:
            log.warning("drain timed out: stopping what is left now")
            self.stop(detach_daemonized=True)
        if self.final_deadline is not None and now >= self.final_deadline:
            self.kill()

    def stop_janitor(self) -> None:
        if self.janitor.channel is not None and self.janitor.stop_sent is None:
            self.janitor.stop_sent = "now"
            self.janitor.channel.send(msg.Stop(mode="now"))
        self.janitor.restart_at = None

    def send_stop(self, record: WorkerRecord, stop: msg.Stop) -> None:
        if record.channel is not None:
            record.channel.send(stop)
        record.stop_sent = stop.mode

    def forget_waiting(self) -> None:
        """Slots waiting in backoff have no worker to stop: drop them."""
        for name in [n for n, r in self.records.items() if r.process is None]:
            del self.records[name]

    def label(self, record: WorkerRecord) -> str:
        """How logs name a child: ``ci-2 worker`` or ``janitor``."""
        return JANITOR if record is self.janitor else f"{record.name} worker"


def _kill(pid: int, how: Callable[[int, int], None]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        how(pid, signal.SIGKILL)
