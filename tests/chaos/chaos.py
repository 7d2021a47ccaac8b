"""The chaos driver: one seeded random action at a time, against a running pool.

Actions: SIGKILL a runner (a live listener), SIGKILL a worker, SIGKILL the root and
start it again with the same command after a short delay (systemd's
``Restart=on-failure`` with ``KillMode=process``), make the loopback GitHub answer
runnerctl's REST calls with errors or dropped connections, slow them down, and flip the
configuration to another pool shape (an atomic rename, then SIGHUP).

Jobs the chaos itself ends are attributed here, so the soak can tell them from jobs
runnerctl lost: a runner killed while it ran a job, and, when the root dies, the jobs
of non-daemonized runners (their workers stop them by design when the root is gone).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from runnerctl.supervisor.root import ESCALATION_STATUS
from tests.chaos.ledger import Ledger
from tests.chaos.monitor import BAD_ENDS, ConfigHistory
from tests.chaos.pool import SHAPES, PoolShape, SoakManager

#: runnerctl's REST calls and the configure step's registration, never the runner
#: protocol (a fault there would be the runner's trouble, not runnerctl's).
REST = (
    r"^(/api/v3)?/(repos/octo/app/actions/runners|app/installations/\d+/access_tokens"
    r"|actions/runner-registration)"
)
PAUSE = (0.6, 2.2)
ROOT_EVERY = 8.0
RESTART_DELAY = (0.3, 1.5)
FAULT_LIFETIME = (2.0, 8.0)
ROOT_STAYS_UP = "root runs until stopped"
#: The share of flips followed at once by a second one.
QUICK_FLIP = 0.3


class ChaosDriver:
    """Picks and carries out actions; records what it did in the ledger."""

    def __init__(
        self, manager: SoakManager, history: ConfigHistory, ledger: Ledger, seed: int
    ) -> None:
        self.manager = manager
        self.history = history
        self.ledger = ledger
        self.random = random.Random(seed)
        #: Job id -> why the chaos ended it.
        self.attributed: dict[int, str] = {}
        self.last_root_kill = time.monotonic()
        self.faults_until: float | None = None
        self.actions: list[tuple[Callable[[], None], int]] = [
            (self.kill_runner, 4),
            (self.kill_worker, 4),
            (self.kill_root, 2),
            (self.api_errors, 2),
            (self.api_latency, 2),
            (self.flip_config, 3),
        ]

    def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(self.random.uniform(*PAUSE))
            self.expire_faults()
            self.restart_if_gone()
            actions = [action for action, _ in self.actions]
            weights = [weight for _, weight in self.actions]
            self.random.choices(actions, weights)[0]()
        self.manager.sandbox.clear_faults()

    # Actions --------------------------------------------------------------------

    def kill_runner(self) -> None:
        listeners = self.manager.listeners()
        if not listeners:
            return
        name = self.random.choice(sorted(listeners))
        pid = listeners[name][0]
        ended_before = self.ended_badly()
        if _kill(pid):
            self.ledger.fault("SIGKILL runner (listener)")
            self.attribute(lambda job: job["runner"] == name, f"runner {name} killed", ended_before)

    def kill_worker(self) -> None:
        workers = {
            name: slot["worker_pid"]
            for name, slot in self.manager.slots().items()
            if slot.get("worker_pid")
            and _title(slot["worker_pid"]).startswith(f"runnerctl-manager: worker {name} ")
        }
        if not workers:
            return
        name = self.random.choice(sorted(workers))
        if _kill(workers[name]):
            self.ledger.fault("SIGKILL worker")

    def kill_root(self) -> None:
        """SIGKILL the root alone; start it again the way systemd would."""
        if time.monotonic() - self.last_root_kill < ROOT_EVERY or not self.manager.running():
            return
        self.last_root_kill = time.monotonic()
        daemonized = self.manager.shape.daemonized

        def at_risk(job: dict[str, object]) -> bool:
            return bool(job["runner"]) and job["runner"] not in daemonized

        ended_before = self.ended_badly()
        os.kill(self.manager.pid, signal.SIGKILL)
        self.ledger.fault("SIGKILL root + restart")
        why = "root killed: a non-daemonized runner stops with it"
        self.attribute(at_risk, why, ended_before)
        self.manager.reap(30)
        time.sleep(self.random.uniform(*RESTART_DELAY))
        # The workers have had the delay to stop their runners; whatever they still
        # ran then was stopped for the same reason.
        self.attribute(at_risk, why, ended_before)
        self.manager.start()

    def api_errors(self) -> None:
        kind = self.random.choice(["500", "502", "503", "drop"])
        spec: dict[str, object] = {
            "fraction": round(self.random.uniform(0.2, 0.7), 2),
            "count": self.random.randint(2, 12),
        }
        if kind == "drop":
            self.manager.sandbox.add_fault(REST, "drop", **spec)
        else:
            self.manager.sandbox.add_fault(REST, "status", status=int(kind), **spec)
        self.ledger.fault(f"API {kind}")
        self.keep_faults()

    def api_latency(self) -> None:
        seconds = round(self.random.uniform(0.2, 2.5), 2)
        self.manager.sandbox.add_fault(
            REST, "latency", seconds=seconds, fraction=0.6, count=self.random.randint(3, 15)
        )
        self.ledger.fault("API latency")
        self.keep_faults()

    def flip_config(self) -> None:
        if not self.manager.ready():
            return
        self.flip_to(self.random.choice([s for s in SHAPES if s != self.manager.shape]))
        if self.random.random() < QUICK_FLIP:
            # An operator's second edit and reload close behind the first.
            time.sleep(self.random.uniform(0.002, 0.02))
            self.flip_to(self.random.choice([s for s in SHAPES if s != self.manager.shape]))
            self.ledger.fault("config flipped twice in a row")

    def flip_to(self, shape: PoolShape) -> None:
        """Rename the new config in place, then SIGHUP the root."""
        self.manager.apply(shape)
        self.history.begin(shape, time.monotonic())
        self.manager.signal(signal.SIGHUP)
        self.ledger.fault(f"config flip + SIGHUP ({shape.size} slots)")

    def restart_if_gone(self) -> None:
        """A root that exited by itself is restarted too (systemd would); only giving
        up on a crash-looping pool is a reason to exit."""
        self.ledger.checked(ROOT_STAYS_UP)
        if self.manager.running():
            return
        code = self.manager.reap(1)
        if code == ESCALATION_STATUS:
            self.ledger.fault("root gave up (crash-looping pool), restarted")
        else:
            self.ledger.violated(ROOT_STAYS_UP, f"the root exited by itself with code {code}")
        time.sleep(self.random.uniform(*RESTART_DELAY))
        self.manager.start()

    # Helpers --------------------------------------------------------------------

    def ended_badly(self) -> set[int]:
        return {int(job["id"]) for job in self.manager.sandbox.jobs() if job["status"] in BAD_ENDS}

    def attribute(
        self, ran_on: Callable[[dict[str, object]], bool], why: str, ended_before: set[int]
    ) -> None:
        """Attribute the jobs ``ran_on`` picks that run now, or that ended badly since
        ``ended_before`` was taken (a stop may be faster than this look)."""
        for job in self.manager.sandbox.jobs():
            just_ended = job["status"] in BAD_ENDS and int(job["id"]) not in ended_before
            if (job["status"] == "running" or just_ended) and ran_on(job):
                self.attributed.setdefault(int(job["id"]), why)

    def keep_faults(self) -> None:
        self.faults_until = time.monotonic() + self.random.uniform(*FAULT_LIFETIME)

    def expire_faults(self) -> None:
        if self.faults_until is not None and time.monotonic() >= self.faults_until:
            self.manager.sandbox.clear_faults()
            self.faults_until = None


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
