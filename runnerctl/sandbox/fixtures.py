"""pytest fixtures for the double; tests/conftest.py imports them.

``sandbox`` is a fresh double per test, installed everywhere, its key and tarball cache
inside the test's own temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.sandbox import Sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A running Sandbox, stopped after the test even when it fails."""
    with Sandbox(root=tmp_path / "sandbox") as double:
        yield double
