"""``runnerctl-manager once``: one reconcile pass without a supervisor.

For hosts that prefer a timer to a service: every slot of the config gets a running
listener (an existing one is adopted, a missing one is installed, registered and
started in its own session, and left running when this command exits); a runner
folder under a pool's ``base_dir`` whose name is no longer a slot is stopped and
deregistered, unless it runs a job (then it is left for the next pass). The summary
says what happened to each; the exit status is 0 when every slot runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runnerctl.errors import RunnerctlError
from runnerctl.supervisor.leftovers import removed_slots
from runnerctl.supervisor.worker import STOP_NOW_TIMEOUT, SlotRunner

log = logging.getLogger(__name__)


@dataclass
class OnceSummary:
    """What one pass did, slot by slot."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    all_running: bool = True

    def add(self, name: str, outcome: str, running: bool | None = None) -> None:
        self.rows.append((name, outcome))
        if running is False:
            self.all_running = False

    def render(self) -> str:
        width = max((len(name) for name, _ in self.rows), default=4)
        lines = [f"{name.ljust(width)}  {outcome}" for name, outcome in self.rows]
        verdict = "every slot runs" if self.all_running else "some slots do not run"
        return "\n".join([*lines, verdict])


def reconcile_once(
    config: Any, make_runner: Callable[[Any], SlotRunner] | None = None
) -> OnceSummary:
    """Start what is missing, retire what was removed; the summary of it."""
    make = make_runner or _real_runners(config)
    summary = OnceSummary()
    slots = list(config.slots())
    for slot in slots:
        ensure_running(slot, make(slot), summary)
    for leftover in removed_slots(slots):
        retire(leftover, make(leftover), summary)
    return summary


def ensure_running(slot: Any, runner: SlotRunner, summary: OnceSummary) -> None:
    """Adopt the slot's listener, or install, register and start one."""
    try:
        proc = runner.adopt()
        if proc is not None:
            summary.add(slot.name, f"running (pid {proc.pid})", running=True)
            proc.close()
            return
        version = runner.install()
        proc = runner.start(runner.register())
    except RunnerctlError as error:
        summary.add(slot.name, f"failed: {str(error).splitlines()[0]}", running=False)
        return
    summary.add(slot.name, f"started (pid {proc.pid}, version {version})", running=True)
    proc.close()


def retire(slot: Any, runner: SlotRunner, summary: OnceSummary) -> None:
    """Stop and deregister a runner whose slot left the config, unless it is busy."""
    try:
        proc = runner.adopt()
        if proc is not None and proc.busy:
            summary.add(slot.name, "removed from config; busy, left for the next pass")
            proc.close()
            return
        if proc is not None:
            proc.stop(now=True, timeout=STOP_NOW_TIMEOUT)
            proc.close()
        runner.remove()
    except RunnerctlError as error:
        summary.add(slot.name, f"removal failed: {str(error).splitlines()[0]}")
        return
    summary.add(slot.name, "removed from config; stopped and deregistered")


def _real_runners(config: Any) -> Callable[[Any], SlotRunner]:
    from runnerctl.distribution import RunnerCache
    from runnerctl.github import GitHub
    from runnerctl.runner import Runner

    github = GitHub.from_settings(config.github, state_dir=config.manager.state_dir)
    cache = RunnerCache(config.manager.cache_dir, github=github, keep=config.manager.keep_versions)

    def make(slot: Any) -> SlotRunner:
        runner: SlotRunner = Runner(
            slot, github=github, cache=cache, server_url=config.github.server_url
        )
        return runner

    return make
