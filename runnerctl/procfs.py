"""Small, exact reads of /proc: start times, parents, children, working folders.

A pid alone does not name a process: pids are reused. A pid together with the start
time the kernel records (``/proc/<pid>/stat`` field 22, in clock ticks since boot)
does, for as long as the machine is up. Every function here returns ``None`` or an
empty result for a process that is gone instead of raising.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None when gone.

    The command name sits in parentheses and may itself hold spaces and parentheses,
    so the split happens after the last ``)``. The returned list starts at field 3.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks after boot (stat field 22)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def state(pid: int) -> str | None:
    """The one-letter process state (``R``, ``S``, ``Z``...), or None when gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie."""
    return state(pid) not in (None, "Z", "X")


def parent(pid: int) -> int | None:
    """The parent pid (stat field 4)."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def cwd(pid: int) -> Path | None:
    """The process's working folder, or None when gone or not readable."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def command(pid: int) -> list[str]:
    """The process's argv (empty for a zombie, a kernel thread, or one that is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def name(pid: int) -> str | None:
    """The kernel's short command name (``comm``, at most 15 characters)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().rstrip("\n")
    except OSError:
        return None


def pids() -> Iterator[int]:
    """Every pid on the machine, in no particular order."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``.

    ``/proc/<pid>/task/<tid>/children`` lists the children each thread forked, so every
    thread is read (the real listener is a multi-threaded .NET process). Kernels built
    without that file get a scan of every process's parent instead.
    """
    if not _HAS_CHILDREN_FILE:
        return [other for other in pids() if parent(other) == pid]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue  # that thread ended while we looked
    return found


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(pid: int) -> list[int]:
    """Children, grandchildren and so on of ``pid``, breadth first."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop(0)
        for child in children(current):
            if child not in found:
                found.append(child)
                frontier.append(child)
    return found


def is_named(pid: int, program: str) -> bool:
    """True when ``pid`` runs ``program``: as its comm, or as argv[0] or a script argv[1]."""
    if name(pid) == program[:15]:
        return True
    return any(os.path.basename(part) == program for part in command(pid)[:2])


def working_in(folder: Path) -> list[int]:
    """Pids, other than this one, whose working folder or command line lies inside ``folder``.

    What the demo and the tests use to prove that nothing they started is left behind.
    """
    root = folder.resolve()
    found = []
    for pid in pids():
        if pid == os.getpid():
            continue
        where = cwd(pid)
        in_folder = where is not None and (where == root or root in where.parents)
        if in_folder or any(str(root) in part for part in command(pid)):
            found.append(pid)
    return found


def started_epoch(ticks: int) -> float:
    """The wall-clock time (epoch seconds) of a start time in clock ticks after boot."""
    with open("/proc/stat", encoding="ascii") as stat:
        boot = next(float(line.split()[1]) for line in stat if line.startswith("btime "))
    return boot + ticks / os.sysconf("SC_CLK_TCK")
