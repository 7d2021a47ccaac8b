"""The soak's background thread: it feeds jobs and checks the listener invariants.

Every ``SAMPLE`` seconds it reads the live ``Runner.Listener`` processes from /proc
(each works in its slot's folder, so the folder names the slot) and checks:

- one listener per slot: never two live listeners working in one slot's folder;
- listeners only for slots in force: a live listener's slot belongs to the current
  configuration, or to one replaced less than ``DRAIN_WINDOW`` seconds ago (a slot a
  scale-down removed may still finish its running job);
- live listeners <= slots in force: never more live listeners than the slots of the
  current configuration plus the slots removed within ``DRAIN_WINDOW`` (the union of
  the slot names of every configuration in force during that window). The largest
  single configuration is not the bound: after 3 slots -> 4 slots that drop one of
  the 3, the dropped slot's busy runner drains beside the 4.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.ledger import Ledger
from tests.chaos.pool import LABELS, REPO, PoolShape, SoakManager

SAMPLE = 0.15
#: Longest job, plus time for a drain to notice its end and stop the listener on a
#: loaded machine (the root reconciles every second).
JOB_SECONDS = (0.5, 3.0)
DRAIN_WINDOW = JOB_SECONDS[1] + 12.0
JOB_EVERY = 0.4
BAD_ENDS = ("lost", "cancelled", "failed")

ONE_PER_SLOT = "one live listener per slot"
WITHIN_POOL = "live listeners <= slots in force"
KNOWN_SLOTS = "listeners only for slots in force"
APPLIED = "root runs the config file it was given"
#: Seconds a running root may take to act on a new config file after its SIGHUP
#: (without the signal it would still notice within manager.interval, 1 s).
RELOAD_WINDOW = 5.0


@dataclass
class ConfigHistory:
    """Which pool shapes were in force when: (shape, since, until or None)."""

    spans: list[tuple[PoolShape, float, float | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, shape: PoolShape, now: float) -> None:
        with self.lock:
            if self.spans:
                last, since, _ = self.spans[-1]
                self.spans[-1] = (last, since, now)
            self.spans.append((shape, now, None))

    def current(self) -> tuple[PoolShape, float]:
        """The shape in force now, and since when."""
        with self.lock:
            shape, since, _ = self.spans[-1]
            return shape, since

    def recent(self, now: float, window: float) -> list[PoolShape]:
        """Every shape in force at some moment of the last ``window`` seconds."""
        with self.lock:
            return [s for s, _, until in self.spans if until is None or until >= now - window]


class Monitor(threading.Thread):
    """Feeds jobs while ``feeding`` and samples the invariants until stopped."""

    def __init__(
        self, manager: SoakManager, history: ConfigHistory, ledger: Ledger, seed: int
    ) -> None:
        super().__init__(name="chaos-monitor", daemon=True)
        self.manager = manager
        self.history = history
        self.ledger = ledger
        self.random = random.Random(seed)
        self.feeding = threading.Event()
        self.halt = threading.Event()
        self.jobs_made = 0
        self.most_listeners = 0
        self.error: BaseException | None = None
        self.next_job = 0.0

    def run(self) -> None:
        try:
            while not self.halt.wait(SAMPLE):
                self.sample()
        except BaseException as error:  # surfaced by the test, never swallowed
            self.error = error

    def stop(self) -> None:
        self.halt.set()
        self.join(30)

    def sample(self) -> None:
        now = time.monotonic()
        listeners = self.manager.listeners()
        self.check_listeners(listeners, now)
        self.check_config(now)
        if self.feeding.is_set():
            self.feed(self.manager.sandbox.jobs(), now)

    def check_listeners(self, listeners: dict[str, list[int]], now: float) -> None:
        total = sum(len(pids) for pids in listeners.values())
        self.most_listeners = max(self.most_listeners, total)
        self.ledger.checked(ONE_PER_SLOT)
        doubled = {name: pids for name, pids in listeners.items() if len(pids) > 1}
        if doubled:
            self.ledger.violated(ONE_PER_SLOT, f"two listeners in one slot: {doubled}")
        shapes = self.history.recent(now, DRAIN_WINDOW)
        known = frozenset().union(*(shape.names for shape in shapes))
        self.ledger.checked(WITHIN_POOL)
        if total > len(known):
            self.ledger.violated(
                WITHIN_POOL, f"{total} live listeners, {len(known)} slots in force: {listeners}"
            )
        self.ledger.checked(KNOWN_SLOTS)
        strays = sorted(set(listeners) - known)
        if strays:
            self.ledger.violated(
                KNOWN_SLOTS,
                f"listeners for {strays} ({[listeners[n] for n in strays]}), no such slot "
                f"in force for {DRAIN_WINDOW:g}s",
            )

    def check_config(self, now: float) -> None:
        """Once a config has been in force for ``RELOAD_WINDOW``, the ready root's
        slots (but those it is removing) are exactly that config's."""
        shape, since = self.history.current()
        if now - since < RELOAD_WINDOW or not self.manager.ready():
            return
        status = self.manager.status()
        if status.get("root", {}).get("pid") != self.manager.pid:
            return
        # A slot being replaced is one of the config's; one being removed is not.
        slots = {
            slot["name"] for slot in status.get("slots", []) if slot.get("retiring") != "remove"
        }
        self.ledger.checked(APPLIED)
        if slots != shape.names:
            self.ledger.violated(
                APPLIED,
                f"{now - since:.1f}s after the config ({shape.label()}) was written and "
                f"signalled, the root runs {sorted(slots)}",
            )

    def feed(self, jobs: list[dict[str, Any]], now: float) -> None:
        """A job every ``JOB_EVERY`` seconds, unless as many as the pool wait already."""
        if now < self.next_job:
            return
        self.next_job = now + JOB_EVERY
        if sum(job["status"] == "queued" for job in jobs) >= self.manager.shape.size:
            return
        self.jobs_made += 1
        self.manager.sandbox.enqueue_job(
            list(LABELS),
            duration=round(self.random.uniform(*JOB_SECONDS), 2),
            scope=f"repo:{REPO}",
            name=f"soak job {self.jobs_made}",
        )
