"""A worker: one long-lived process per slot that keeps the slot's runner alive.

Its life is a loop of verb-named steps: **adopt** a runner the last worker left
behind (its ``runner.pid``), else **launch** one (install, register, start); **watch**
it, sleeping in one ``wait`` on the runner's pidfd, its log events fd, the control
pipe and a signal wakeup fd; then **decide** what its exit calls for: an ephemeral
runner that did its job is followed by the next one at once; any other exit restarts
after a backoff that resets once a runner has run steadily; an error in the config or
the credentials is reported and backed off, never retried in a hot loop.

Drain, and why it deregisters first: a busy runner is never signalled. Once it is
idle, a stop that removes the registration deletes it on GitHub *before* stopping the
listener: GitHub refuses to delete a runner that has taken a job (422), so a job
assigned in that instant is not lost: the worker sees the refusal and keeps draining.
A stop that keeps the registration (SIGTERM to a persistent, non-daemonized pool)
stops the listener as soon as it is idle.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Protocol

# Imported here, not in run_worker: the root imports this module before it forks, so
# every worker shares these modules' pages with the root instead of copying them.
from runnerctl import procfs
from runnerctl.distribution import RunnerCache
from runnerctl.errors import (
    AuthError,
    ConfigError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RunnerBusy,
    RunnerctlError,
)
from runnerctl.github import GitHub
from runnerctl.runner import Runner
from runnerctl.runner.exits import Exit
from runnerctl.runner.observe import Busy, Idle
from runnerctl.runner.process import RunnerProcess
from runnerctl.runner.register import local_runner_id
from runnerctl.supervisor import channel as msg
from runnerctl.supervisor import leftovers
from runnerctl.supervisor.children import set_title
from runnerctl.supervisor.intensity import Backoff
from runnerctl.supervisor.protocols import SlotSettings
from runnerctl.supervisor.signals import SignalInbox
from runnerctl.supervisor.states import SlotState, SlotStateMachine

log = logging.getLogger(__name__)

#: A runner that stayed up this long counts as started: its backoff resets.
STABLE_AFTER = 30.0
#: Budget for stopping a listener at once (SIGINT, SIGTERM, then SIGKILL).
STOP_NOW_TIMEOUT = 8.0
#: How often a drain re-checks a job's end when no log line arrives.
DRAIN_RECHECK = 2.0
#: Errors only a person can fix: back off at the longest delay straight away.
PERSON_FIXES = (ConfigError, AuthError, PermissionDenied, NotFound)


class SlotRunner(Protocol):
    """One slot's runner operations (``runnerctl.runner.Runner``)."""

    def install(self) -> str: ...

    def register(self) -> Any: ...

    def start(self, registration: Any) -> RunnerProcess: ...

    def adopt(self) -> RunnerProcess | None: ...

    def remove(self) -> None: ...


class Worker:
    """Keeps one slot's runner alive; ``run()`` returns the worker's exit status."""

    def __init__(
        self,
        slot: SlotSettings,
        make_runner: Callable[[Any], SlotRunner],
        channel: msg.Channel,
        clock: Callable[[], float] = time.monotonic,
        api_usage: Callable[[], tuple[int, int | None]] = lambda: (0, None),
    ) -> None:
        self.slot = slot
        self.make_runner = make_runner
        self.channel = channel
        self.api_usage = api_usage
        self.clock = clock
        self.machine = SlotStateMachine(slot.name, on_change=self.on_change, clock=clock)
        # SIGINT and SIGHUP are caught and dropped (the root decides what they mean),
        # not ignored: an ignored signal stays ignored in the runner the worker starts.
        self.inbox = SignalInbox([signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
        self.backoff = Backoff()
        self.runner: SlotRunner | None = None
        self.proc: RunnerProcess | None = None
        self.stop: msg.Stop | None = None
        self.update_to: str | None = None
        self.target_version: str | None = None  # for a slot on latest: the newest seen
        self.runner_started: float | None = None
        self.took_job = False
        self.version: str | None = None
        self.jobs_done = 0
        self.restarts = 0
        self.last_exit: int | None = None
        self.retry_at: float | None = None
        self.deregistered = False
        self.registered = False  # this worker registered or adopted a runner
        self.exits = 0
        self.noticed = False
        self.runner_id: int | None = None
        self.ended: RunnerProcess | None = None  # the runner that exited, not yet closed

    # The loop -------------------------------------------------------------------

    def run(self) -> int:
        """Adopt or launch, watch, decide, until told to stop; then stop as told."""
        self.inbox.install()
        self.report()
        self.proc = self.adopt()
        if self.proc is None:
            # A worker spawned only to retire its slot stops here instead of launching;
            # with an adopted runner, watch() reads the stop and drains the job first.
            self.take_control()
        while self.stop is None:
            if self.proc is None:
                self.proc = self.launch()
                continue
            ended = self.watch(self.proc)
            if ended is not None:
                self.forget_runner(ended)
                if self.stop is None:
                    self.decide(ended)
        self.finish()
        return 0

    def adopt(self) -> RunnerProcess | None:
        """Take over a listener the previous worker left running, if there is one."""
        try:
            proc = self.get_runner().adopt()
        except (RunnerctlError, OSError) as error:
            log.warning("adopt failed: %s (%s)", self.slot.name, error)
            return None
        if proc is None:
            return None
        self.runner_started, self.took_job = started_at(proc), proc.busy
        self.registered = True
        self.runner_id = None  # read back from the folder's .runner when reported
        self.proc = proc
        self.machine.move(SlotState.BUSY if proc.busy else SlotState.IDLE, "adopted")
        return proc

    def launch(self) -> RunnerProcess | None:
        """Install, register and start a runner; None after a failure was backed off."""
        try:
            self.machine.move(SlotState.INSTALLING)
            runner = self.get_runner()
            self.version = runner.install()
            if self.poll_control():
                return None
            self.machine.move(SlotState.REGISTERING)
            registration = runner.register()
            self.registered = True
            if self.poll_control():
                return None
            proc = runner.start(registration)
            self.runner_id = getattr(registration, "runner_id", None)
        except (RunnerctlError, OSError) as error:
            self.fail(error)
            return None
        finally:
            self.release_ended()
        self.runner_started, self.took_job, self.update_to = time.time(), False, None
        self.proc = proc  # before the move, so that its report carries the runner
        if self.noticed:
            self.notify("")  # the problem reported before is over
        self.machine.move(SlotState.IDLE, f"pid {proc.pid}")
        return proc

    def watch(self, proc: RunnerProcess) -> Exit | None:
        """Wait until the runner exits (its Exit) or a stop lets it go (None)."""
        while True:
            timeout = DRAIN_RECHECK if self.stop or self.update_to else None
            pipe = self.channel.connection
            ready = wait([proc.fileno(), proc.events_fileno(), pipe, self.inbox.fileno()], timeout)
            if pipe in ready or self.inbox.fileno() in ready:
                self.take_control()
            if proc.events_fileno() in ready:
                self.take_events(proc)
            ended = proc.exit()
            if ended is not None:
                return ended
            if self.ready_to_let_go(proc):
                return None

    def forget_runner(self, ended: Exit) -> None:
        """The runner exited: release it and remember how it ended."""
        assert self.proc is not None
        # Closed after the next runner started: closing its inotify fd makes the kernel
        # wait for a grace period, milliseconds that would delay the respawn.
        self.ended = self.proc
        self.proc, self.last_exit, self.runner_id = None, ended.code, None
        self.exits += 1
        lived = time.time() - (self.runner_started or time.time())
        log.info("exited: %s (%s, after %.0fs)", self.slot.name, ended, lived)
        if lived >= STABLE_AFTER:
            self.backoff.reset()  # start success is a duration: it ran steadily

    def release_ended(self) -> None:
        """Close the fds of the runner that exited, once they no longer hold anything up."""
        if self.ended is not None:
            self.ended.close()
            self.ended = None

    def decide(self, ended: Exit) -> None:
        """After an exit: the next runner now (a job done, an update), or after a backoff."""
        if self.slot.ephemeral and ended.action == "done" and self.took_job:
            self.backoff.reset()
            self.machine.move(SlotState.INSTALLING, "next ephemeral runner")
            return
        if self.update_to is not None:
            self.machine.move(SlotState.INSTALLING, f"update to {self.update_to}")
            return
        if ended.action == "update" and self.settle_update():
            self.machine.move(SlotState.INSTALLING, "runner updated itself")
            return
        self.restarts += 1
        if ended.action == "deprecated":
            self.notify(ended.meaning)
        self.pause(self.backoff.next_delay(), f"runner {ended.action}")

    def finish(self) -> None:
        """Carry out the stop: leave a daemonized runner, or stop it; then deregister."""
        assert self.stop is not None
        self.release_ended()
        proc, stop = self.proc, self.stop
        if proc is not None and stop.mode == "detach" and self.slot.daemonize:
            log.info("detached: %s (runner pid %s keeps running)", self.slot.name, proc.pid)
            proc.close()
            self.machine.move(SlotState.STOPPED, "detached")
            return
        self.machine.move(SlotState.STOPPING, stop.mode)
        if proc is not None:
            proc.stop(now=True, timeout=STOP_NOW_TIMEOUT)
            proc.close()
            self.proc = None
        if stop.deregister and not self.deregistered and self.may_be_registered():
            self.deregister()
        self.machine.move(SlotState.STOPPED)

    # Steps inside the loop ------------------------------------------------------

    def take_control(self) -> None:
        """Read the control pipe and the signal inbox."""
        for signum in self.inbox.take():
            if signum != signal.SIGTERM:
                continue
            log.info("signal: %s (worker %s)", signum.name, self.slot.name)
            mode: msg.StopMode = "detach" if self.slot.daemonize else "drain"
            self.stop = self.stop or msg.Stop(mode=mode)
        try:
            messages = self.channel.receive_ready() if self.channel.connection.poll(0) else []
        except msg.PeerGone:
            self.root_gone()
            return
        for message in messages:
            if isinstance(message, msg.Stop):
                self.stop = _stronger(self.stop, message)
            elif isinstance(message, msg.Update):
                self.update_to = message.version
                self.aim_at(message.version)
            elif isinstance(message, msg.StatusRequest):
                self.report()

    def take_events(self, proc: RunnerProcess) -> None:
        """Follow the runner's busy and idle lines."""
        for event in proc.read_events():
            if isinstance(event, Busy):
                self.took_job = True
                if self.machine.state is SlotState.IDLE:
                    self.machine.move(SlotState.BUSY, event.job)
            elif isinstance(event, Idle):
                self.jobs_done += 1
                if self.machine.state is SlotState.BUSY:
                    self.machine.move(SlotState.IDLE, f"{event.job}: {event.result}")
                else:
                    self.report()

    def ready_to_let_go(self, proc: RunnerProcess) -> bool:
        """Whether a stop or an update may take the runner now (never during a job)."""
        stop = self.stop
        if stop is not None and (stop.mode == "now" or stop.mode == "detach"):
            return True
        if stop is None and (self.update_to is None or self.slot.ephemeral):
            return False
        if self.machine.state is not SlotState.DRAINING and stop is not None:
            self.machine.move(SlotState.DRAINING, "waiting for the job" if proc.busy else "")
        if proc.busy:
            return False
        if stop is None:
            return self.roll_update(proc)
        if stop.deregister:
            return self.deregister()
        return True

    def roll_update(self, proc: RunnerProcess) -> bool:
        """Between jobs: stop a persistent runner so the next launch installs the update."""
        log.info("updating: %s to %s", self.slot.name, self.update_to)
        proc.stop(now=True, timeout=STOP_NOW_TIMEOUT)
        return False  # the pidfd turns readable; decide() relaunches

    def may_be_registered(self) -> bool:
        """Whether a registration might exist: this worker made one, or the folder has one."""
        return self.registered or (Path(self.slot.directory) / ".runner").exists()

    def settle_update(self) -> bool:
        """After exit 3 or 4: let the runner's own updater finish; whether it did."""
        finish = getattr(self.get_runner(), "finish_update", None)
        try:
            return bool(finish()) if finish is not None else False
        except (RunnerctlError, OSError) as error:
            log.warning("update did not settle: %s (%s)", self.slot.name, error)
            return False

    def deregister(self) -> bool:
        """Remove the registration; False when GitHub says a job just started."""
        try:
            self.get_runner().remove()
            self.deregistered = True
        except RunnerBusy:
            log.info("draining: %s took a job; waiting for it", self.slot.name)
            return False
        except (RunnerctlError, OSError) as error:
            log.warning("deregister failed: %s (%s)", self.slot.name, error)
        return True

    def pause(self, seconds: float, reason: str) -> None:
        """Back off: wait ``seconds`` while still answering the pipe."""
        self.retry_at = time.time() + seconds
        self.machine.move(SlotState.BACKOFF, f"{reason}; retry in {seconds:.0f}s")
        deadline = self.clock() + seconds
        while self.stop is None and self.clock() < deadline:
            wait([self.channel.connection, self.inbox.fileno()], deadline - self.clock())
            self.take_control()
        self.retry_at = None

    def poll_control(self) -> bool:
        """Between blocking steps: read the pipe; True when a stop arrived."""
        self.take_control()
        return self.stop is not None

    def fail(self, error: BaseException) -> None:
        """Report a failed launch and back off (at once to the cap for a person's fix)."""
        if isinstance(error, RateLimited):
            delay = max(1.0, error.retry_at - time.time())
        elif isinstance(error, PERSON_FIXES):
            delay = self.backoff.cap
        else:
            delay = self.backoff.next_delay()
        log.error("launch failed: %s (%s)", self.slot.name, error)
        self.notify(str(error).splitlines()[0] if str(error) else type(error).__name__)
        self.pause(delay, type(error).__name__)

    def root_gone(self) -> None:
        """The root died: leave a daemonized runner for the next one, else stop."""
        log.warning("root gone: %s worker ends", self.slot.name)
        mode: msg.StopMode = "detach" if self.slot.daemonize else "now"
        self.stop = msg.Stop(mode=mode, deregister=False)

    # Reporting ------------------------------------------------------------------

    def on_change(self, old: SlotState, new: SlotState) -> None:
        set_title(f"worker {self.slot.name} [{new}]")
        self.report()

    def report(self) -> None:
        """Send the root this slot's whole picture."""
        proc = self.proc
        api_calls, rate_remaining = self.api_usage()
        self.channel.send(
            msg.Report(
                slot=self.slot.name,
                state=self.machine.state.value,
                reason=self.machine.reason,
                runner_pid=proc.pid if proc is not None else None,
                runner_id=self.current_runner_id() if proc is not None else None,
                runner_started=self.runner_started if proc is not None else None,
                runner_version=self.version,
                busy=self.machine.state is SlotState.BUSY,
                jobs_done=self.jobs_done,
                restarts=self.restarts,
                exits=self.exits,
                last_exit=self.last_exit,
                retry_at=self.retry_at,
                api_calls=api_calls,
                rate_remaining=rate_remaining,
            )
        )

    def current_runner_id(self) -> int | None:
        """The GitHub id of the running runner: from its registration, else its files."""
        if self.runner_id is None:
            self.runner_id = local_runner_id(Path(self.slot.directory))
        return self.runner_id

    def notify(self, text: str) -> None:
        self.noticed = bool(text)
        self.channel.send(msg.Notice(slot=self.slot.name, text=text))

    def aim_at(self, version: str) -> None:
        """A slot on ``latest`` installs ``version`` from now on (until a newer one).

        The exact version, not ``latest`` again: the download cache may remember an
        older answer for ``latest`` a while longer.
        """
        if self.slot.version == "latest" and version != self.target_version:
            self.target_version, self.runner = version, None

    def get_runner(self) -> SlotRunner:
        if self.runner is None:
            slot: Any = self.slot
            if self.target_version is not None and hasattr(slot, "model_copy"):
                slot = slot.model_copy(update={"version": self.target_version})
            self.runner = self.make_runner(slot)
        return self.runner


def _stronger(current: msg.Stop | None, new: msg.Stop) -> msg.Stop:
    """A later stop may hurry an earlier one (drain -> now), never slow it down."""
    if current is None:
        return new
    rank = {"drain": 0, "detach": 1, "now": 2}
    mode = new.mode if rank[new.mode] >= rank[current.mode] else current.mode
    return msg.Stop(mode=mode, deregister=current.deregister or new.deregister)


def started_at(proc: RunnerProcess) -> float:
    """When an adopted listener really started (epoch), from its recorded start time."""
    ticks = proc.record.start_time
    if not ticks:
        return time.time()
    try:
        return procfs.started_epoch(ticks)
    except (OSError, StopIteration, ValueError, IndexError):
        return time.time()


def run_worker(slot: Any, config: Any, channel: msg.Channel) -> int:
    """The real worker body the root forks: a Worker over ``runnerctl.runner.Runner``."""
    # One client per worker, made on first use so that a credential problem surfaces
    # where the worker reports and backs off; its call count is this slot's API share.
    github: GitHub | None = None

    def make_runner(settings: Any) -> SlotRunner:
        nonlocal github
        try:
            leftovers.remember(settings)  # so a root can retire it after it left the config
        except OSError as error:
            log.warning("slot record not written: %s (%s)", settings.name, error)
        if github is None:
            github = GitHub.from_settings(config.github, state_dir=config.manager.state_dir)
        cache = RunnerCache(
            config.manager.cache_dir, github=github, keep=config.manager.keep_versions
        )
        runner: SlotRunner = Runner(
            settings, github=github, cache=cache, server_url=config.github.server_url
        )
        return runner

    def api_usage() -> tuple[int, int | None]:
        return (github.calls, github.rate_remaining) if github is not None else (0, None)

    os.environ.pop("NOTIFY_SOCKET", None)  # only the root speaks to systemd
    return Worker(slot, make_runner, channel, api_usage=api_usage).run()
