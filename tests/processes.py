"""Process helpers for tests: find what a test started, kill it, wait for conditions."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runnerctl import procfs
from runnerctl.procfs import alive

__all__ = ["alive", "processes_under", "terminate", "wait_for"]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


def processes_under(folder: Path) -> list[int]:
    """Pids whose working directory or command line lies inside ``folder``."""
    return procfs.working_in(folder)


def terminate(pid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
