"""Restart intensity: how often a slot may restart before it has to wait.

Erlang's supervisors allow at most R restarts in T seconds; past that they give up.
A runner pool should not give up on one slot, so here a slot past its intensity
enters backoff instead: it waits a delay that doubles with each further restart,
up to a cap, and the delay resets once the slot has run steadily again. Only when
most slots are past their intensity at the same time does the root give up and
exit non-zero, so that systemd (with its own restart limit) takes over.

Defaults: at most 5 restarts in 60 s; then 1 s, 2 s, 4 s, ... up to 300 s.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_MAX_RESTARTS = 5
DEFAULT_PERIOD = 60.0
DEFAULT_BASE_DELAY = 1.0
DEFAULT_MAX_DELAY = 300.0


@dataclass
class Backoff:
    """A capped exponential delay: ``base``, ``2*base``, ``4*base``, ... ``cap``."""

    base: float = DEFAULT_BASE_DELAY
    cap: float = DEFAULT_MAX_DELAY
    level: int = 0

    def next_delay(self) -> float:
        """The delay for this failure; each call doubles the next one."""
        delay = min(self.cap, self.base * float(2 ** min(self.level, 62)))
        self.level += 1
        return delay

    def reset(self) -> None:
        """Back to the shortest delay, after a stable run."""
        self.level = 0


@dataclass
class RestartIntensity:
    """At most ``max_restarts`` immediate restarts in ``period`` seconds, then backoff."""

    max_restarts: int = DEFAULT_MAX_RESTARTS
    period: float = DEFAULT_PERIOD
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.monotonic
    _restarts: collections.deque[float] = field(default_factory=collections.deque)

    def record_restart(self) -> float:
        """Count one restart now; return the seconds to wait before it (0: at once)."""
        now = self.clock()
        self._forget_before(now - self.period)
        if not self._restarts:
            self.backoff.reset()  # a whole quiet period: the slot had settled
        self._restarts.append(now)
        if len(self._restarts) <= self.max_restarts:
            return 0.0
        return self.backoff.next_delay()

    def reset(self) -> None:
        """Forget past restarts, after a run that lasted."""
        self._restarts.clear()
        self.backoff.reset()

    @property
    def exceeded(self) -> bool:
        """Whether the slot is past its intensity right now (it is in backoff)."""
        self._forget_before(self.clock() - self.period)
        return len(self._restarts) > self.max_restarts

    @property
    def restarts_in_period(self) -> int:
        """Restarts counted within the last ``period`` seconds."""
        self._forget_before(self.clock() - self.period)
        return len(self._restarts)

    def _forget_before(self, moment: float) -> None:
        while self._restarts and self._restarts[0] < moment:
            self._restarts.popleft()


def most_failing(exceeded: Iterable[bool]) -> bool:
    """Whether more than half of the slots, and at least two, are past their intensity.

    One bad slot never takes the pool down: a pool of one slot never escalates.
    """
    flags = list(exceeded)
    failing = sum(flags)
    return failing >= 2 and failing * 2 > len(flags)
