"""Telling systemd how the service is doing: readiness, status, reload, stop, watchdog.

The protocol is sd_notify(3): newline-separated ``KEY=VALUE`` assignments in one
datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract
address written with a leading ``@``). It is small enough to speak directly, so
runnerctl needs no libsystemd binding.

Only the root process talks to systemd (the unit says ``NotifyAccess=main``), and it
does so from its main loop. So every call here is cheap and safe to make there: the
socket is non-blocking, a datagram that cannot be sent is dropped, and a failure is
logged once and never raised. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
no-op. A Notifier copied into a forked worker stays silent there, because it only
sends from the process that created it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Variables systemd sets for the main process only; children must not inherit them, or
#: a worker or a job could speak for the service.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def without_notify_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` for a child process, without systemd's notify variables."""
    return {key: value for key, value in environ.items() if key not in NOTIFY_VARIABLES}


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC``.

    None when the watchdog is off, when the value is not a positive integer, or when
    ``$WATCHDOG_PID`` names another process than ``pid`` (default: this one).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner is not None and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2_000_000


def _socket_address(value: str) -> str | bytes | None:
    """The address to send to: a filesystem path, or abstract bytes for ``@name``."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def _one_line(text: str) -> str:
    # A newline would end the assignment and start a new one of the sender's choosing.
    return " ".join(text.splitlines())


class Notifier:
    """The root's line to systemd; every method returns at once and never raises."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._owner = os.getpid()
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self._failed = False
        self.watchdog_interval = watchdog_interval(env, self._owner)
        self._last_watchdog = time.monotonic()

    @staticmethod
    def _parse_address(value: str) -> str | bytes | None:
        if not value:
            return None
        address = _socket_address(value)
        if address is None:
            log.warning("ignoring NOTIFY_SOCKET=%r: not a path or an @abstract name", value)
        return address

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere: systemd gave a socket and this is its process."""
        return self._address is not None and os.getpid() == self._owner

    def ready(self, status: str | None = None) -> None:
        """Startup or a reload is complete; optionally with a new status line."""
        self.send("READY=1", *self._status_field(status))

    def status(self, text: str) -> None:
        """A one-line summary for ``systemctl status``."""
        self.send(*self._status_field(text))

    def reloading(self) -> None:
        """A reload has begun; finish it with ``ready()``.

        systemd 253 and later expect the monotonic clock with it, to pair this message
        with the reload request; older versions ignore the extra field.
        """
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now}")

    def stopping(self) -> None:
        """The service has begun to drain and stop."""
        self.send("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on a start, reload or stop."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        """Tell the watchdog the main loop is alive."""
        self._last_watchdog = time.monotonic()
        self.send("WATCHDOG=1")

    def watchdog_due_in(self) -> float | None:
        """Seconds until the next ping is due (0 when overdue); None without a watchdog.

        The root takes the smaller of this and its reconcile timeout as its wait timeout.
        """
        if self.watchdog_interval is None:
            return None
        elapsed = time.monotonic() - self._last_watchdog
        return max(0.0, self.watchdog_interval - elapsed)

    def watchdog_if_due(self) -> None:
        """Ping the watchdog when its interval has passed since the last ping."""
        if self.watchdog_due_in() == 0.0:
            self.watchdog()

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; False when nothing was sent."""
        address = self._address
        if not fields or address is None or os.getpid() != self._owner:
            return False
        message = "\n".join(fields).encode()
        try:
            self._connection().sendto(message, address)
        except OSError as error:
            self._report(error)
            return False
        return True

    def close(self) -> None:
        """Release the socket; later messages open a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _connection(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._socket = sock
        return self._socket

    def _report(self, error: OSError) -> None:
        # Once per Notifier: a full or vanished socket would otherwise flood the log
        # from every main-loop pass.
        if not self._failed:
            self._failed = True
            log.warning("cannot notify systemd (%s); dropping notifications", error)
        else:
            log.debug("notify dropped: %s", error)

    @staticmethod
    def _status_field(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)
