"""``runner.pid``: which process is this slot's listener, written so it cannot lie.

The file holds the pid and the kernel's start time of that pid, ``"<pid> <start>\\n"``.
A reader trusts it only when a live process with that pid has that start time, so a
pid reused after a reboot or a crash is never mistaken for the runner. The file is
replaced atomically (write a temporary file, fsync, rename) so a reader never sees
half of it, even when the writer is killed mid-way.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from runnerctl import procfs

PIDFILE_NAME = "runner.pid"


@dataclass(frozen=True)
class PidRecord:
    """A process named exactly: its pid and its start time in clock ticks after boot."""

    pid: int
    start_time: int

    def matches(self) -> bool:
        """True when this exact process is still alive (not merely its pid)."""
        return procfs.alive(self.pid) and procfs.start_time(self.pid) == self.start_time


def record(pid: int) -> PidRecord | None:
    """The record of a running ``pid``, or None when it is already gone."""
    started = procfs.start_time(pid)
    return PidRecord(pid, started) if started is not None else None


def write(path: Path, entry: PidRecord, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` atomically with ``entry``; ``owner`` (uid, gid) chowns it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{entry.pid} {entry.start_time}\n".encode("ascii"))
        os.fsync(fd)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def read(path: Path) -> PidRecord | None:
    """The record in ``path``, or None when the file is missing or malformed."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        return None
    return PidRecord(int(parts[0]), int(parts[1]))


def remove(path: Path, entry: PidRecord | None = None) -> None:
    """Delete ``path``; with ``entry``, only while it still names that process."""
    if entry is not None and read(path) != entry:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
