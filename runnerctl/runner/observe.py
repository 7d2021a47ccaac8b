"""Busy and idle from the host itself: the listener's console lines, confirmed in /proc.

The listener prints ``Listening for Jobs`` once it is online, ``Running job: <name>``
when it hands a job to a ``Runner.Worker`` child, and ``Job <name> completed with
result: <result>`` when that child is done. An inotify watch on ``runner.log`` wakes
the caller whenever the file grows; ``read_events`` then reads the new lines from the
last offset and turns them into events. No GitHub API call and no polling loop is
involved: a pool of many runners costs nothing while it idles.

``/proc`` confirms what the log says: a busy listener has a ``Runner.Worker`` process
under it. An adopted runner's state comes from ``/proc`` first, because the log may
hold lines from earlier lives.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runnerctl import procfs
from runnerctl.runner.inotify import IN_MODIFY, Inotify

log = logging.getLogger(__name__)

WORKER_PROGRAM = "Runner.Worker"
LISTENER_PROGRAM = "Runner.Listener"

_ONLINE = re.compile(r"Listening for Jobs")
_RUNNING = re.compile(r"Running job: (?P<job>.+?)\s*$")
_COMPLETED = re.compile(r"Job (?P<job>.+) completed with result: (?P<result>\w+)")
#: The real runner says "Runner version v2.x is deprecated..." (exit 1, or 7 if asked).
_DEPRECATED = re.compile(r"\bversion\b.*\bdeprecated\b", re.IGNORECASE)
#: How much of an existing log an adopted runner's observer reads back for the job name.
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Online:
    """The listener connected and waits for jobs."""


@dataclass(frozen=True)
class Busy:
    """A job started; ``worker`` is the ``Runner.Worker`` pid seen in /proc, if any.

    The line can race the worker's exec (its name is set late in exec), so ``worker``
    may be None for a job that does run; ``RunnerProcess.worker()`` looks again.
    """

    job: str
    worker: int | None = None


@dataclass(frozen=True)
class Idle:
    """The job ended with ``result`` (``Succeeded``, ``Failed``, ``Canceled``...)."""

    job: str
    result: str


Event = Online | Busy | Idle


def parse(line: str) -> Event | None:
    """The event one console line announces, or None."""
    completed = _COMPLETED.search(line)
    if completed:
        return Idle(completed["job"], completed["result"])
    running = _RUNNING.search(line)
    if running:
        return Busy(running["job"])
    if _ONLINE.search(line):
        return Online()
    return None


def worker_of(listener: int) -> int | None:
    """The pid of a ``Runner.Worker`` under ``listener``, or None when it runs no job."""
    for pid in procfs.descendants(listener):
        # A zombie worker has finished its job; only its parent has yet to reap it.
        if procfs.is_named(pid, WORKER_PROGRAM) and procfs.alive(pid):
            return pid
    return None


class LogObserver:
    """Follows one listener's ``runner.log`` from an offset and tracks busy and idle."""

    def __init__(self, path: Path, listener: int, offset: int | None = None) -> None:
        """Watch ``path`` from ``offset``; None means "adopted: from the current end"."""
        self.path = path
        self.listener = listener
        self.online = offset is None
        self.job: str | None = None
        self.deprecated = False
        self._pending = b""
        self._handle = open(path, "rb")  # noqa: SIM115 (held for the observer's life)
        self._inotify = Inotify()
        try:
            self._inotify.watch(path, IN_MODIFY)
        except OSError:
            self.close()
            raise
        if offset is None:
            self._resume_from_proc()
        else:
            self._handle.seek(offset)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def fileno(self) -> int:
        """Readable whenever ``runner.log`` grew."""
        return self._inotify.fileno()

    def read_events(self) -> list[Event]:
        """Consume the pending notifications and return the events in the new lines."""
        if self._inotify.closed:
            return []
        self._inotify.read()
        return [event for line in self._new_lines() if (event := self._apply(line))]

    def close(self) -> None:
        self._inotify.close()
        self._handle.close()

    def _new_lines(self) -> list[str]:
        chunk = self._handle.read()
        if not chunk:
            return []
        data = self._pending + chunk
        *complete, self._pending = data.split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in complete]

    def _apply(self, line: str) -> Event | None:
        if _DEPRECATED.search(line):
            self.deprecated = True
        event = parse(line)
        if isinstance(event, Online):
            self.online = True
        elif isinstance(event, Busy):
            worker = worker_of(self.listener)
            event = Busy(event.job, worker)
            self.job = event.job
            log.info("busy: pid %s, job %r, worker %s", self.listener, event.job, worker)
        elif isinstance(event, Idle):
            self.job = None
            log.info("idle: pid %s, job %r ended %s", self.listener, event.job, event.result)
        return event

    def _resume_from_proc(self) -> None:
        """Adopted runner: /proc says whether a job runs; the log's tail names it."""
        end = self._handle.seek(0, os.SEEK_END)
        if worker_of(self.listener) is None:
            return
        self._handle.seek(max(0, end - _TAIL_BYTES))
        tail = self._handle.read(end - self._handle.tell()).decode("utf-8", errors="replace")
        self.job = "unknown job"
        for line in tail.splitlines():
            event = parse(line)
            if isinstance(event, Busy):
                self.job = event.job
        self._handle.seek(end)
