"""Options of the chaos soak: how long it runs and which seed drives it."""

from __future__ import annotations

import pytest

#: What the soak needs beyond its chaos phase: start, recovery, two stops (seconds).
OVERHEAD = 420.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos soak (tests/chaos)")
    group.addoption(
        "--chaos-seconds",
        type=float,
        default=60.0,
        help="seconds of chaos in the soak (default 60)",
    )
    group.addoption(
        "--chaos-seed",
        type=int,
        default=None,
        help="seed of the soak's random choices (default: a fresh one, printed)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each soak a pytest timeout that grows with --chaos-seconds."""
    seconds = float(config.getoption("--chaos-seconds"))
    for item in items:
        if "chaos_seconds" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(seconds * 1.5 + OVERHEAD))


@pytest.fixture
def chaos_seconds(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--chaos-seconds"))


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int | None:
    seed = request.config.getoption("--chaos-seed")
    return None if seed is None else int(seed)
