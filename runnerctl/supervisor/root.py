"""The root process: forks a worker per slot, then only supervises.

Everything the root does happens in one loop around one
``multiprocessing.connection.wait`` call. It waits on every worker's sentinel (readable
when the worker exits) and pipe, on the signal wakeup fd, and on the metrics socket,
with a timeout that ends at the next thing due: a reconcile, a restart leaving
backoff, a stop deadline, a watchdog ping. Whatever woke it, the loop then runs the
same steps in the same order: receive, reap, restart, reconcile, publish. The root
does no network I/O, so a slow GitHub never delays a restart; the janitor child does
the housekeeping that needs GitHub.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from runnerctl.errors import ConfigError
from runnerctl.metrics import Metrics
from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.children import fork_child
from runnerctl.supervisor.intensity import RestartIntensity, most_failing
from runnerctl.supervisor.plan import Current, Retire, Rollable, plan_reconcile, plan_updates
from runnerctl.supervisor.protocols import (
    JanitorMain,
    Loader,
    PoolConfig,
    SlotSettings,
    Waitable,
    WorkerMain,
)
from runnerctl.supervisor.publish import Publisher, summary
from runnerctl.supervisor.records import ConfigFile, JanitorSlot, WorkerRecord, in_order
from runnerctl.supervisor.signals import SignalInbox
from runnerctl.supervisor.stopping import Phase, Stopping
from runnerctl.systemd import Notifier

log = logging.getLogger(__name__)

#: The root's exit status when most slots crash-loop together (systemd restarts it).
ESCALATION_STATUS = 3


class Root(Stopping):
    """The supervisor of one pool; ``run()`` returns the process exit status."""

    def __init__(
        self,
        config_path: Path,
        *,
        load: Loader,
        worker_main: WorkerMain,
        janitor_main: JanitorMain | None = None,
        find_leftovers: Callable[[PoolConfig], Sequence[SlotSettings]] | None = None,
        interval: float | None = None,
        notifier: Notifier | None = None,
        extras: tuple[Waitable, ...] = (),
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_file = ConfigFile(Path(config_path))
        self.load = load
        self.worker_main = worker_main
        self.janitor_main = janitor_main
        self.find_leftovers = find_leftovers
        self.interval_override = interval
        self.notifier = notifier or Notifier()
        self.publisher = Publisher(Path(config_path), self.notifier, metrics)
        self.extras = extras
        self.metrics = metrics
        self.clock = clock
        self.inbox = SignalInbox([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
        self.records: dict[str, WorkerRecord] = {}
        self.janitor = WorkerRecord(slot=JanitorSlot(), intensity=RestartIntensity())
        self.phase = Phase.RUNNING
        self.drain_deadline: float | None = None
        self.final_deadline: float | None = None
        self.exit_status = 0
        self.next_reconcile = 0.0
        self.last_reconcile: float | None = None
        self.config_error = ""
        self.latest_version: str | None = None
        self.pool_sent: dict[str, int | None] | None = None
        self.config: PoolConfig

    # The loop -------------------------------------------------------------------

    def run(self) -> int:
        """Start every slot and supervise until stopped; the exit status."""
        self.start()
        try:
            while not self.finished():
                self.wait_and_dispatch()
                self.reap()
                self.escalate_if_failing()
                self.restart_due()
                if self.phase == Phase.RUNNING and self.clock() >= self.next_reconcile:
                    self.reconcile()
                self.enforce_deadlines()
                self.publish()
        except BaseException:
            log.exception("root failing: stopping every worker")
            self.abandon()
            raise
        finally:
            self.phase = Phase.STOPPED
            self.publish()
            self.inbox.close()
        log.info("stopped: root (pid %d, status %d)", os.getpid(), self.exit_status)
        return self.exit_status

    def start(self) -> None:
        """Load the config (ConfigError propagates), route signals, fork every worker."""
        seen = self.config_file.snapshot()
        self.config = self.load(self.config_file.path)
        self.config_file.mark_loaded(seen)
        self.inbox.install()
        log.info("started: root (pid %d, %s)", os.getpid(), self.config_file.path)
        self.reconcile()
        self.retire_leftovers()
        self.spawn_janitor()
        self.publish()

    def wait_and_dispatch(self) -> None:
        """Block until something is ready or the next thing is due, then read it."""
        handlers: dict[Any, Callable[[], None]] = {self.inbox.fileno(): self.take_signals}
        for record in [*self.records.values(), self.janitor]:
            if record.process is not None:
                handlers[record.process.sentinel] = _nothing  # reap() looks at every worker
            if record.channel is not None:
                handlers[record.channel.connection] = _receiver(self, record)
        for extra in self.extras:
            handlers[extra] = extra.handle_ready
        for ready in wait(list(handlers), self.timeout()):
            handlers[ready]()
        self.notifier.watchdog_if_due()

    def timeout(self) -> float:
        """Seconds until the next thing falls due."""
        moments = [r.restart_at for r in self.records.values() if r.restart_at is not None]
        if self.janitor.restart_at is not None:
            moments.append(self.janitor.restart_at)
        if self.phase == Phase.RUNNING:
            moments.append(self.next_reconcile)
        moments += [m for m in (self.drain_deadline, self.final_deadline) if m is not None]
        ping = self.notifier.watchdog_due_in()
        if ping is not None:
            moments.append(self.clock() + ping)
        return max(0.0, min(moments) - self.clock()) if moments else 60.0

    def finished(self) -> bool:
        """Whether a stop is complete: no child left."""
        if self.phase == Phase.RUNNING:
            return False
        return not self.janitor.alive and not any(r.alive for r in self.records.values())

    # Steps ----------------------------------------------------------------------

    def take_signals(self) -> None:
        """Act on the signals the handlers recorded, in order."""
        for signum in self.inbox.take():
            log.info("signal: %s (root pid %d, %s)", signum.name, os.getpid(), self.phase.value)
            if signum == signal.SIGHUP and self.phase == Phase.RUNNING:
                self.reload()
            elif signum == signal.SIGTERM and self.phase == Phase.RUNNING:
                self.drain()
            elif signum in (signal.SIGTERM, signal.SIGINT) and self.phase in (
                Phase.RUNNING,
                Phase.DRAINING,
            ):
                self.stop(detach_daemonized=False)
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.kill()

    def receive(self, record: WorkerRecord) -> None:
        """Read what a child sent; a closed pipe means it is exiting (reap follows)."""
        assert record.channel is not None
        try:
            messages = record.channel.receive_ready()
        except msg.PeerGone:
            record.channel.close()
            record.channel = None
            return
        except msg.ChannelError as error:
            log.error("bad message: %s (%s)", record.name, error)
            return
        for message in messages:
            self.handle_message(record, message)

    def handle_message(self, record: WorkerRecord, message: msg.Message) -> None:
        """Take in one report, notice or version from a child."""
        if isinstance(message, msg.Report):
            exited = message.exits > record.report.exits
            if self.metrics is not None and exited and message.last_exit is not None:
                self.metrics.runner_exited(record.name, message.last_exit)
            if self.metrics is not None:
                self.metrics.api(message.api_calls, message.rate_remaining, process=record.name)
            record.report = message
            if record.updating and message.runner_version == self.latest_version:
                record.updating = False
        elif isinstance(message, msg.Notice):
            target = self.records.get(message.slot)
            if target is not None:
                target.notice = message.text
        elif isinstance(message, msg.LatestVersion):
            if message.version != self.latest_version:
                log.info("latest runner version: %s", message.version)
            self.latest_version = message.version
        self.roll_updates()

    def reap(self) -> None:
        """Collect every child that exited and decide what follows for its slot."""
        for record in list(self.records.values()):
            if record.process is not None and not record.process.is_alive():
                self.collect(record)
                self.after_exit(record)
        if self.janitor.process is not None and not self.janitor.process.is_alive():
            self.collect(self.janitor)
            if self.phase == Phase.RUNNING and self.janitor_main is not None:
                self.schedule_restart(self.janitor)

    def collect(self, record: WorkerRecord) -> None:
        """Forget a dead child's process and pipe, and log how it ended."""
        assert record.process is not None
        code = record.process.exitcode
        lived = self.clock() - record.started
        log.log(
            logging.INFO if record.stop_sent or self.phase != Phase.RUNNING else logging.WARNING,
            "exited: %s (pid %s, code %s, after %.1fs)",
            self.label(record),
            record.process.pid,
            code,
            lived,
        )
        record.process.close()
        record.process = None
        if record.channel is not None:
            record.channel.close()
            record.channel = None
        record.last_worker_exit = code
        if lived >= record.intensity.period:
            record.intensity.reset()  # a worker that lasted: its slot had settled

    def after_exit(self, record: WorkerRecord) -> None:
        """A slot's worker is gone: retire, replace, or restart it one-for-one."""
        if self.phase != Phase.RUNNING or record.retiring == "remove":
            log.info("retired: %s", record.name)
            del self.records[record.name]
        elif record.retiring == "replace" and record.successor is not None:
            log.info("replacing: %s with new settings", record.name)
            fresh = WorkerRecord(slot=record.successor, intensity=record.intensity)
            self.records[record.name] = fresh
            self.spawn(fresh)
        else:
            self.schedule_restart(record)

    def schedule_restart(self, record: WorkerRecord) -> None:
        """Restart at once, or after a backoff delay when the slot restarts too often."""
        delay = record.intensity.record_restart()
        record.restarts += 1
        record.stop_sent = None
        record.updating = False
        if delay == 0:
            self.spawn_any(record)
            return
        record.restart_at = self.clock() + delay
        log.warning(
            "backoff: %s (%d restarts in %.0fs, next in %.0fs)",
            record.name,
            record.intensity.restarts_in_period,
            record.intensity.period,
            delay,
        )

    def restart_due(self) -> None:
        """Fork the children whose backoff ended."""
        now = self.clock()
        for record in [*self.records.values(), self.janitor]:
            if record.restart_at is not None and record.restart_at <= now:
                self.spawn_any(record)

    def escalate_if_failing(self) -> None:
        """Give up (exit non-zero, systemd restarts us) when most slots crash-loop."""
        if self.phase != Phase.RUNNING:
            return
        live = [r for r in self.records.values() if r.retiring is None]
        if not most_failing(r.intensity.exceeded for r in live):
            return
        failing = sum(r.intensity.exceeded for r in live)
        log.error("gave up: %d of %d slots crash-looping; exiting", failing, len(live))
        self.exit_status = ESCALATION_STATUS
        self.stop(detach_daemonized=True)

    def reconcile(self) -> None:
        """Make the workers match the config: start new slots, retire removed ones."""
        began = time.perf_counter()
        self.reconcile_pass()
        if self.metrics is not None:
            self.metrics.reconcile_took(time.perf_counter() - began)

    def reconcile_pass(self) -> None:
        self.last_reconcile = time.time()
        self.next_reconcile = self.clock() + self.interval()
        self.reload_if_changed()
        desired = {slot.name: slot for slot in self.config.slots()}
        current = {
            name: Current(record.slot.fingerprint(), record.retiring)
            for name, record in self.records.items()
        }
        wanted = {name: slot.fingerprint() for name, slot in desired.items()}
        for action in plan_reconcile(wanted, current):
            if isinstance(action, Retire):
                self.retire(self.records[action.slot], desired.get(action.slot))
            else:
                record = self.new_record(desired[action.slot])
                self.records[action.slot] = record
                self.spawn(record)
        self.records = in_order(self.records, list(desired))
        self.send_pool()

    def reload_if_changed(self) -> bool:
        """Re-read the config file if its content changed; keep the old one if invalid."""
        if not self.config_file.changed():
            return False
        seen = self.config_file.snapshot()
        try:
            config = self.load(self.config_file.path)
        except ConfigError as error:
            self.config_error = f"{len(error.problems)} problem(s), kept the last good config"
            for problem in error.problems:
                log.error("config invalid: %s", problem)
            log.error(
                "reload ignored: %s is invalid; still running the last good config",
                self.config_file.path,
            )
            self.config_file.mark_loaded(seen)
            return False
        self.config, self.config_error = config, ""
        self.config_file.mark_loaded(seen)
        log.info("reloaded: %s (%d slots)", self.config_file.path, len(config.slots()))
        self.restart_janitor()
        return True

    def reload(self) -> None:
        """SIGHUP: reconcile at once, telling systemd a reload is in progress."""
        self.notifier.reloading()
        self.reconcile()
        self.notifier.ready(summary(list(self.records.values())))

    def retire_leftovers(self) -> None:
        """Runners of slots removed while no root ran: adopt, drain and deregister them."""
        if self.find_leftovers is None:
            return
        for slot in self.find_leftovers(self.config):
            if slot.name in self.records:
                continue
            log.warning("leftover: %s is no longer in the config; retiring it", slot.name)
            record = self.new_record(slot)
            self.records[slot.name] = record
            self.spawn(record)
            self.retire(record, None)

    def retire(self, record: WorkerRecord, successor: SlotSettings | None) -> None:
        """Drain, deregister and end a slot's worker; with ``successor``, replace it."""
        record.retiring = "remove" if successor is None else "replace"
        record.successor = successor
        log.info("retiring: %s (%s)", record.name, record.retiring)
        if record.process is None:
            record.restart_at = None
            self.after_exit(record)
        elif record.stop_sent is None:
            self.send_stop(record, msg.Stop(mode="drain", deregister=True))

    def roll_updates(self) -> None:
        """Tell a few workers on ``latest`` at a time to move to a newer runner."""
        if self.latest_version is None or self.phase != Phase.RUNNING:
            return
        rollable = [
            Rollable(r.name, r.slot.version == "latest", r.report.runner_version, r.updating)
            for r in self.records.values()
            if r.alive and r.retiring is None
        ]
        parallel = max(1, len(rollable) // 4)
        for name in plan_updates(self.latest_version, rollable, parallel):
            record = self.records[name]
            if record.channel is not None:
                record.updating = record.channel.send(msg.Update(self.latest_version))

    def publish(self) -> None:
        """Show the pool as it is now: status.json, systemd, metrics, title; tell the janitor."""
        root = {
            "phase": self.phase.value,
            "last_reconcile": self.last_reconcile,
            "config_error": self.config_error,
            "latest_version": self.latest_version,
            "slots": len(self.records),
        }
        records = list(self.records.values())
        state_dir = Path(self.config.manager.state_dir)
        self.publisher.publish(state_dir, root, records, self.phase == Phase.RUNNING)
        self.send_pool()

    # Helpers --------------------------------------------------------------------

    def spawn(self, record: WorkerRecord) -> None:
        """Fork the worker of one slot."""
        slot, config, main = record.slot, self.config, self.worker_main
        try:
            record.process, record.channel = fork_child(
                f"worker {slot.name} [starting]",
                lambda channel: main(slot, config, channel),
                self.inbox,
                self.parent_ends(),
            )
        except OSError as error:  # out of processes or memory: try again later
            delay = record.intensity.backoff.next_delay()
            log.error("fork failed: %s worker (%s); retry in %.0fs", slot.name, error, delay)
            record.restart_at = self.clock() + delay
            return
        record.started, record.restart_at, record.stop_sent = self.clock(), None, None
        record.report = msg.Report(slot=slot.name)
        log.info("spawned: %s worker (pid %s)", slot.name, record.process.pid)

    def spawn_janitor(self) -> None:
        """Fork the janitor, when there is one."""
        if self.janitor_main is None or self.phase != Phase.RUNNING:
            return
        config, main = self.config, self.janitor_main
        record = self.janitor
        record.process, record.channel = fork_child(
            "janitor", lambda channel: main(config, channel), self.inbox, self.parent_ends()
        )
        record.started, record.restart_at, record.stop_sent = self.clock(), None, None
        self.pool_sent = None
        log.info("spawned: janitor (pid %s)", record.process.pid)

    def spawn_any(self, record: WorkerRecord) -> None:
        if record is self.janitor:
            self.spawn_janitor()
        else:
            self.spawn(record)

    def restart_janitor(self) -> None:
        """The janitor holds the old config: end it; reap starts a fresh one."""
        if self.janitor.channel is not None:
            self.janitor.channel.send(msg.Stop(mode="now"))
            self.janitor.stop_sent = "now"
            self.janitor.intensity.reset()

    def send_pool(self) -> None:
        """Tell the janitor each slot's current runner id, when it changed."""
        pool = {
            name: record.report.runner_id if record.state.running else None
            for name, record in self.records.items()
        }
        if self.janitor.channel is not None and pool != self.pool_sent:
            self.pool_sent = pool
            self.janitor.channel.send(msg.Pool(runners=pool))

    def parent_ends(self) -> list[Any]:
        ends = [r.channel.connection for r in self.records.values() if r.channel is not None]
        if self.janitor.channel is not None:
            ends.append(self.janitor.channel.connection)
        return ends

    def new_record(self, slot: SlotSettings) -> WorkerRecord:
        manager = self.config.manager
        intensity = RestartIntensity(
            max_restarts=int(manager.max_restarts), period=float(manager.restart_period)
        )
        return WorkerRecord(slot=slot, intensity=intensity)

    def interval(self) -> float:
        if self.interval_override is not None:
            return self.interval_override
        return float(self.config.manager.interval)


def _receiver(root: Root, record: WorkerRecord) -> Callable[[], None]:
    return lambda: root.receive(record)


def _nothing() -> None:
    return None
