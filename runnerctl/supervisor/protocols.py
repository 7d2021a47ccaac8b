"""The parts of the configuration the supervisor reads, as structural types.

The root only needs a few settings of the configuration (``runnerctl.config``'s
``Config`` and ``Slot`` satisfy these), which keeps the tree testable with any
loader and keeps the supervisor from depending on how the config is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from runnerctl.supervisor.channel import Channel


class SlotSettings(Protocol):
    """One runner slot as the supervisor sees it."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def ephemeral(self) -> bool: ...

    @property
    def daemonize(self) -> bool: ...

    @property
    def directory(self) -> Path: ...

    def fingerprint(self) -> str: ...


class ManagerSettings(Protocol):
    """The ``manager:`` section."""

    @property
    def interval(self) -> float: ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def stop_timeout(self) -> float: ...

    @property
    def max_restarts(self) -> int: ...

    @property
    def restart_period(self) -> float: ...


class PoolConfig(Protocol):
    """A loaded configuration."""

    @property
    def source(self) -> Path: ...

    @property
    def manager(self) -> ManagerSettings: ...

    def slots(self) -> Sequence[SlotSettings]: ...


#: Loads the configuration from a path; raises ConfigError.
Loader = Callable[[Path], PoolConfig]

#: The body of a worker process: (slot, whole config, channel to the root) -> exit status.
WorkerMain = Callable[[Any, Any, Channel], int]

#: The body of the janitor process: (config, channel to the root) -> exit status.
JanitorMain = Callable[[Any, Channel], int]


class Waitable(Protocol):
    """An extra fd for the loop, such as the metrics endpoint's listening socket."""

    def fileno(self) -> int: ...

    def handle_ready(self) -> None: ...
