"""The janitor: GitHub housekeeping in a child of its own, never in the root.

Two chores, each on a slow cadence so they cost few API calls:

* **Ghost cleanup** (every ``janitor_interval``): a registration left offline with
  one of this pool's slot names, which is not the slot's current runner, is deleted.
  The list calls are ETag-conditional (a 304 is free). The root tells the janitor
  each slot's current runner id; a slot without a known id (registering, in
  backoff) is left alone, and a name outside the pool is never touched.
* **Update checks** (every ``update_check_interval``, at most hourly) for slots on
  ``latest``: the newest version from the downloads list goes to the root, which
  rolls the slots to it a few at a time. A pinned version behind the newest one gets
  a notice in status and the log, since GitHub refuses a version 30 days after a
  newer one came out.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from multiprocessing.connection import wait
from typing import Any

from runnerctl.errors import RunnerBusy, RunnerctlError
from runnerctl.scope import Scope
from runnerctl.supervisor import channel as msg

log = logging.getLogger(__name__)

#: The first sweep waits this long, so a starting pool settles its registrations first.
FIRST_SWEEP_DELAY = 30.0
#: Update checks never run more often than this.
MIN_UPDATE_INTERVAL = 3600.0
#: GitHub's window for installing a newer runner release.
REFUSAL_WINDOW = timedelta(days=30)


def version_key(version: str) -> tuple[int, ...]:
    """``2.336.0`` -> ``(2, 336, 0)``; an unparsable version sorts first."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


class Janitor:
    """Sweeps ghosts and checks for runner updates until told to stop."""

    def __init__(
        self,
        config: Any,
        github: Any,
        channel: msg.Channel,
        clock: Callable[[], float] = time.monotonic,
        first_sweep_delay: float = FIRST_SWEEP_DELAY,
    ) -> None:
        self.config = config
        self.github = github
        self.channel = channel
        self.clock = clock
        self.pool: dict[str, int | None] = {}
        manager = config.manager
        self.sweep_every = float(manager.janitor_interval)
        self.check_every = max(MIN_UPDATE_INTERVAL, float(manager.update_check_interval))
        self.next_sweep = clock() + min(first_sweep_delay, self.sweep_every)
        self.next_check = clock()
        self.stopping = False

    def run(self) -> int:
        """Serve until a Stop arrives or the root is gone."""
        while not self.stopping:
            timeout = max(0.0, min(self.next_sweep, self.next_check) - self.clock())
            if wait([self.channel.connection], timeout) and not self.take_messages():
                return 0
            now = self.clock()
            if now >= self.next_check:
                self.next_check = now + self.check_every
                self.guarded(self.check_updates)
            if now >= self.next_sweep:
                self.next_sweep = now + self.sweep_every
                self.guarded(self.sweep)
        return 0

    def take_messages(self) -> bool:
        """Read the pipe; False when it is time to end."""
        try:
            messages = self.channel.receive_ready()
        except msg.PeerGone:
            return False
        for message in messages:
            if isinstance(message, msg.Stop):
                return False
            if isinstance(message, msg.Pool):
                self.pool = dict(message.runners)
        return True

    def guarded(self, chore: Callable[[], None]) -> None:
        """Run a chore; a GitHub failure waits for the next round."""
        try:
            chore()
        except (RunnerctlError, OSError) as error:
            log.warning("janitor: %s failed: %s", chore.__name__, error)

    def sweep(self) -> None:
        """Delete offline ghosts of this pool's names, scope by scope."""
        scopes = {slot.scope: None for slot in self.config.slots()}
        for scope in scopes:
            listed = self.github.list_runners(scope)
            # The list took a while: take the root's latest word on each slot's runner,
            # so a runner registered meanwhile is not mistaken for a ghost.
            if self.channel.connection.poll(0) and not self.take_messages():
                self.stopping = True
                return
            current = self.current_runners(scope)
            for runner in listed:
                if is_ghost(runner, current):
                    self.delete(scope, runner)

    def current_runners(self, scope: Scope) -> dict[str, int]:
        """Slot name -> its current runner id, for the slots of ``scope`` that have one."""
        current = {}
        for slot in self.config.slots():
            runner_id = self.pool.get(slot.name)
            if slot.scope == scope and runner_id is not None:
                current[slot.name] = runner_id
        return current

    def delete(self, scope: Scope, runner: Any) -> None:
        try:
            gone = self.github.delete_runner(scope, runner.id)
        except RunnerBusy:
            return
        if gone:
            log.info("ghost removed: %s (id %s, %s)", runner.name, runner.id, scope)

    def check_updates(self) -> None:
        """Find the newest runner version; tell the root, and warn about old pins."""
        slots = list(self.config.slots())
        following = [slot for slot in slots if slot.version == "latest"]
        pinned = [slot for slot in slots if slot.version != "latest"]
        if not slots:
            return
        scope = (following or pinned)[0].scope
        versions = [app.version for app in self.github.runner_downloads(scope) if app.version]
        if not versions:
            return
        latest = max(versions, key=version_key)
        if following:
            self.channel.send(msg.LatestVersion(version=latest))
        behind = [s for s in pinned if version_key(s.version) < version_key(latest)]
        if behind:
            self.warn_pinned(behind, latest)

    def warn_pinned(self, slots: list[Any], latest: str) -> None:
        """Tell the root (status) and the log that a pinned version will be refused."""
        refused_by = ""
        try:
            published = self.github.release(f"v{latest}").published_at
            if published:
                when = datetime.fromisoformat(published.replace("Z", "+00:00"))
                refused_by = f" by {(when + REFUSAL_WINDOW).date()} at the latest"
        except (RunnerctlError, OSError, ValueError):
            pass
        for slot in slots:
            text = (
                f"version {slot.version} is behind {latest}; GitHub refuses it{refused_by} "
                "(set version: latest or a newer release)"
            )
            log.warning("old runner: %s: %s", slot.name, text)
            self.channel.send(msg.Notice(slot=slot.name, text=text))


def is_ghost(runner: Any, current: dict[str, int]) -> bool:
    """An offline, idle registration with a pool name that is not that slot's runner."""
    mine = current.get(runner.name)
    return mine is not None and runner.id != mine and runner.status == "offline" and not runner.busy


def run_janitor(config: Any, channel: msg.Channel) -> int:
    """The janitor body the root forks."""
    from runnerctl.github import GitHub

    for ignored in (signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)  # the root decides what those mean
    github = GitHub.from_settings(config.github, state_dir=config.manager.state_dir)
    return Janitor(config, github, channel).run()
