"""What the benchmark reads from the manager's debug log: the workers' moves after a
runner exits, and the GitHub client's timed calls, on the monotonic clock."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

STATE_LINE = re.compile(
    r"^(\S+) \w+ runnerctl\.supervisor\.states: "
    r"state: (\S+) \S+ -> (installing|registering|backoff)"
)
API_LINE = re.compile(r" runnerctl\.github\.client: github: \S+ \S+ -> \d+ \(([\d.]+)s\)")
#: Wall clock minus monotonic clock, to put log and call-log times on the kernel's clock.
WALL_OFFSET = time.time() - time.monotonic()


def read_log(path: Path) -> tuple[dict[str, list[tuple[float, str]]], list[tuple[float, float]]]:
    """Per slot, its worker's moves after an exit (when, to which state); and (when,
    seconds) of every API call."""
    reactions: dict[str, list[tuple[float, str]]] = {}
    api: list[tuple[float, float]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        state = STATE_LINE.match(line)
        if state:
            when = datetime.fromisoformat(state.group(1)).timestamp() - WALL_OFFSET
            reactions.setdefault(state.group(2), []).append((when, state.group(3)))
            continue
        call = API_LINE.search(line)
        if call:
            when = datetime.fromisoformat(line.split(" ", 1)[0]).timestamp() - WALL_OFFSET
            api.append((when, float(call.group(1))))
    return reactions, api


def first_after(moments: list[float], after: float, slack: float = 0.0) -> float | None:
    """The first moment at or after ``after - slack`` (log stamps are truncated to ms)."""
    for moment in moments:
        if moment >= after - slack:
            return moment
    return None
