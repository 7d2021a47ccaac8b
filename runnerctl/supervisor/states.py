"""The states of one runner slot, and the one place where a slot changes state.

A worker owns its slot's state: it moves through these states as it installs,
registers and watches its runner, and reports every move to the root. The root
only mirrors what its workers report (plus ``stopped`` once a worker is gone and
``backoff`` while it waits to restart one), so only the worker validates moves.

    starting ──> installing ──> registering ──> idle <──> busy
       │             │               │           │         │
       └──── adopt ──┼───────────────┼─────────> idle/busy │
                     v               v           v         v
                  backoff <──────────────────── (runner exited)
                     │
    any state ──> draining ──> stopping ──> stopped
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class SlotState(str, enum.Enum):
    """Where one slot is in its runner's life; the value is what ``ps`` and status show."""

    STARTING = "starting"
    INSTALLING = "installing"
    REGISTERING = "registering"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def running(self) -> bool:
        """Whether a runner listener is up in this state."""
        return self in (SlotState.IDLE, SlotState.BUSY, SlotState.DRAINING)


S = SlotState
_ENDING = {S.DRAINING, S.STOPPING, S.STOPPED}

#: Every move a worker may make. Draining, stopping and stopped are reachable from
#: anywhere because a stop request can arrive at any moment.
TRANSITIONS: dict[SlotState, frozenset[SlotState]] = {
    # A fresh worker first looks for a runner to adopt, else installs one.
    S.STARTING: frozenset({S.INSTALLING, S.IDLE, S.BUSY, S.BACKOFF} | _ENDING),
    S.INSTALLING: frozenset({S.REGISTERING, S.BACKOFF} | _ENDING),
    # Registering ends when the listener is started; it reports busy later.
    S.REGISTERING: frozenset({S.IDLE, S.BACKOFF} | _ENDING),
    # A runner that exits goes back to installing (next ephemeral runner, an update)
    # or into backoff (a crash of a persistent runner).
    S.IDLE: frozenset({S.BUSY, S.INSTALLING, S.REGISTERING, S.BACKOFF} | _ENDING),
    S.BUSY: frozenset({S.IDLE, S.INSTALLING, S.REGISTERING, S.BACKOFF} | _ENDING),
    # A draining runner may still finish its job (busy -> idle is not a way back).
    S.DRAINING: frozenset({S.STOPPING, S.STOPPED}),
    S.BACKOFF: frozenset({S.INSTALLING, S.REGISTERING} | _ENDING),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A move the state table does not allow: a bug in the worker, never a user error."""


class SlotStateMachine:
    """One slot's current state, when it was entered, and why."""

    def __init__(
        self,
        slot: str,
        on_change: Callable[[SlotState, SlotState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slot = slot
        self.state = SlotState.STARTING
        self.reason = ""
        self._clock = clock
        self.since = clock()
        self._on_change = on_change

    def move(self, new: SlotState, reason: str = "") -> None:
        """Enter ``new`` (logged); raise InvalidTransition when the table forbids it."""
        old = self.state
        if new == old:
            if reason and reason != self.reason:
                self.reason = reason  # same state, news worth reporting (a new retry time)
                if self._on_change is not None:
                    self._on_change(old, new)
            return
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"slot {self.slot}: {old} -> {new} is not a valid move")
        self.state, self.reason, self.since = new, reason, self._clock()
        log.info("state: %s %s -> %s%s", self.slot, old, new, f" ({reason})" if reason else "")
        if self._on_change is not None:
            self._on_change(old, new)

    def can_move(self, new: SlotState) -> bool:
        """Whether ``move(new)`` would be accepted."""
        return new == self.state or new in TRANSITIONS[self.state]

    @property
    def age(self) -> float:
        """Seconds spent in the current state."""
        return self._clock() - self.since
