"""Signals as readable events: handlers only record, a wakeup fd wakes the wait.

A handler that did real work would run at an arbitrary point of the main loop, and
relying on EINTR to cut a blocking wait short is fragile (Python retries most calls).
So a handler appends the signal number to a queue, ``signal.set_wakeup_fd`` writes a
byte to a socket pair, and the socket's read end sits in the same
``multiprocessing.connection.wait`` as every pipe: the loop wakes, takes the queued
signals and acts on them in order.
"""

from __future__ import annotations

import collections
import signal
import socket
from collections.abc import Iterable
from types import FrameType


class SignalInbox:
    """Queue of received signals with a readable fd; one per process."""

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self.signals = tuple(signals)
        self._pending: collections.deque[int] = collections.deque()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous_fd: int | None = None

    def install(self) -> None:
        """Route the signals here; call from the main thread."""
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in self.signals:
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def fileno(self) -> int:
        """Readable whenever a signal arrived since the last ``take``."""
        return self._reader.fileno()

    def take(self) -> list[signal.Signals]:
        """Every signal received so far, oldest first; empties the queue."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        taken = []
        while self._pending:
            taken.append(signal.Signals(self._pending.popleft()))
        return taken

    def close(self) -> None:
        """Restore default handlers and the previous wakeup fd, close the sockets."""
        for signum in self.signals:
            signal.signal(signum, signal.SIG_DFL)
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        self._reader.close()
        self._writer.close()

    def forget_in_child(self) -> None:
        """After a fork: drop the parent's handlers and sockets without touching its fds."""
        signal.set_wakeup_fd(-1)
        for signum in self.signals:
            signal.signal(signum, signal.SIG_DFL)
        self._pending.clear()
        self._reader.close()
        self._writer.close()
