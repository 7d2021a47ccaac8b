"""Shared test fixtures: deadlines, and a guarantee that no test leaves a process behind."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.sandbox.fixtures import sandbox  # noqa: F401  (the loopback GitHub)
from tests.processes import processes_under, terminate


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if any process still works inside the session's temporary tree."""
    base = tmp_path_factory.getbasetemp()
    yield
    leftovers = processes_under(base)
    for pid in leftovers:
        terminate(pid, signal.SIGKILL)
    assert not leftovers, f"processes left running under {base}: {leftovers}"


@pytest.fixture(autouse=True)
def _reap_test_processes(tmp_path: Path) -> Iterator[None]:
    """Kill whatever a test started inside its own folder, even when the test failed."""
    yield
    for pid in processes_under(tmp_path):
        if pid != os.getpid():
            terminate(pid, signal.SIGKILL)
