"""One runner's life: install, register, start, observe, stop, adopt, remove.

``Runner`` drives one slot's runner; ``RunnerProcess`` is a running listener as two
file descriptors (a pidfd and an inotify watch on ``runner.log``) that a worker waits
on; ``Exit`` says what the listener's exit code means; ``Busy``, ``Idle`` and
``Online`` are the events its console lines announce. See docs/architecture.md,
"One runner's life".
"""

from runnerctl.runner.exits import Exit, explain
from runnerctl.runner.lifecycle import Runner
from runnerctl.runner.observe import Busy, Event, Idle, Online
from runnerctl.runner.process import RunnerProcess
from runnerctl.runner.register import Registration

__all__ = [
    "Busy",
    "Event",
    "Exit",
    "Idle",
    "Online",
    "Registration",
    "Runner",
    "RunnerProcess",
    "explain",
]
