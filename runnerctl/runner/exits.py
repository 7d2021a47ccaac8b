"""What a listener's exit code means, and what to do about it.

``run.sh`` folds every fatal code into 0, so runnerctl starts ``bin/Runner.Listener``
itself and reads the real code. The table follows the runner's own ``ReturnCode``; the
actions say what a supervisor should do next, so callers never branch on raw numbers.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

#: done: stop, nothing wrong (ephemeral job done, or deregistered on the server).
#: stopped: a fatal error the runner will repeat; fix the cause, then restart.
#: retry: a transient failure; restart after a delay.
#: update: the runner is updating itself; let ``update.finished`` appear, then restart.
#: conflict: another listener holds these credentials; re-register or stop the other.
#: deprecated: this runner version is refused; install a newer one.
#: killed: ended by a signal.
#: unknown: the code is not known (an adopted runner is not our child).
Action = Literal[
    "done", "stopped", "retry", "update", "conflict", "deprecated", "killed", "unknown"
]

#: The codes after which the process group must be left alone: ``_update.sh`` still runs.
UPDATE_CODES = frozenset({3, 4})

DEPRECATED_FIX = (
    "this runner version is deprecated by GitHub: set the slot's version to 'latest' "
    "(or a release from the last 30 days) and restart"
)

_MEANINGS: dict[int, tuple[Action, str]] = {
    0: ("done", "finished (job done, stopped, or deregistered on GitHub)"),
    1: ("stopped", "terminated with an error (see runner.log)"),
    2: ("retry", "retryable error; restart after a delay"),
    3: ("update", "self-update in progress; wait for update.finished, then restart"),
    4: ("update", "ephemeral self-update in progress; wait for update.finished, then restart"),
    5: ("conflict", "another listener holds these credentials; re-register with --replace"),
    6: ("retry", "configuration refreshed; restart"),
    7: ("deprecated", DEPRECATED_FIX),
}


@dataclass(frozen=True)
class Exit:
    """How a listener ended: its code (or signal), the action it calls for, and why."""

    code: int | None
    action: Action
    meaning: str
    signal: int | None = None

    @property
    def keep_group(self) -> bool:
        """True when the process group must not be killed (a self-update is running)."""
        return self.code in UPDATE_CODES

    def __str__(self) -> str:
        if self.signal is not None:
            return self.meaning
        if self.code is None:
            return f"code unknown: {self.meaning}"
        return f"code {self.code}: {self.meaning}"


def explain(returncode: int | None, deprecated: bool = False) -> Exit:
    """Map a ``Popen``-style return code (negative for a signal) to an ``Exit``.

    ``deprecated`` says the listener's log reported a deprecated version: the runner
    exits 1 for that unless told to return 7, and the fix differs from a plain error.
    """
    if returncode is None:
        return Exit(None, "unknown", "exit code unknown: the runner was adopted, not our child")
    if returncode < 0:
        return Exit(None, "killed", f"killed by {signal_name(-returncode)}", signal=-returncode)
    if deprecated and returncode in (1, 7):
        return Exit(returncode, "deprecated", DEPRECATED_FIX)
    unexpected: tuple[Action, str] = ("retry", "unexpected exit code; restart after a delay")
    action, meaning = _MEANINGS.get(returncode, unexpected)
    return Exit(returncode, action, meaning)


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; the bare number for a signal Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
