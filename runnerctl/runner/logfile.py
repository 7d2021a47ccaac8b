"""``runner.log``: the listener's console, appended to a file the runner owns.

The listener writes straight into the file (an ``O_APPEND`` descriptor handed to the
child), not into a pipe: a pipe would die with the worker that reads it, and a
daemonized runner must outlive its worker. The file is rotated by size, and only
before a start, so one listener's whole life stays in one file that an observer can
follow by offset.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LOG_NAME = "runner.log"
#: Rotate when the log is larger than this before a start.
MAX_BYTES = 10 * 1024 * 1024
#: How many rotated files (runner.log.1 ... runner.log.N) are kept.
KEEP = 3


def rotate(path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> bool:
    """Shift ``path`` to ``path.1`` (and older ones up) when it exceeds ``max_bytes``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.with_name(f"{path.name}.{keep}").unlink()
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{index + 1}"))
    path.rename(path.with_name(f"{path.name}.1"))
    log.info("rotated: %s (%d bytes)", path, size)
    return True


def open_for_child(path: Path, owner: tuple[int, int] | None = None) -> int:
    """An append-only descriptor on ``path`` for a child's stdout and stderr.

    The caller closes it once the child has started; ``owner`` (uid, gid) chowns the
    file so a runner running as another user can reopen it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if owner is not None:
        os.fchown(fd, *owner)
    return fd


def append(path: Path, text: str) -> None:
    """Append ``text`` to the log (runnerctl's own notes between runner lines)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
