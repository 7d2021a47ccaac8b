"""Fixtures shared by the stand-in runner's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.test_standin_support import Starter, build_latest, unpack


@pytest.fixture(scope="module")
def latest_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_latest(tmp_path_factory)


@pytest.fixture
def runner_dir(latest_tarball: Path, tmp_path: Path) -> Path:
    """A freshly unpacked stand-in runner of the latest version."""
    return unpack(latest_tarball, tmp_path / "runner")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Starter]:
    with Starter(tmp_path) as starter:
        yield starter
