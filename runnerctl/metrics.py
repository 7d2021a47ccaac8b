"""Prometheus exposition of what the root knows about its pool.

prometheus_client's own server (``start_http_server``) runs in a thread, and the root
must stay single-threaded because it forks workers. So the root owns the listening
socket instead: ``MetricsEndpoint.fileno()`` goes into the same
``multiprocessing.connection.wait`` call as the worker pipes, and when it is readable
the root calls ``handle_ready()``, which answers one scrape and returns. A scrape is
small and local, and the whole exchange is bounded by a short timeout, so a client
that connects and then stalls costs the main loop at most that long.

``Metrics`` holds the numbers. The root feeds it from what workers report
(``observe_slot``, ``runner_exited``, ``api``) and from its own loop
(``reconcile_took``); the text is rendered from that snapshot at scrape time.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import socket
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerctl import __version__
from runnerctl.errors import ConfigError

log = logging.getLogger(__name__)

RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUEST_LIMIT = 8192  # bytes of request head; a scrape needs a few hundred


@dataclass(frozen=True)
class SlotSample:
    """The last report about one slot. ``busy`` is None while no runner is up."""

    state: str
    busy: bool | None
    jobs: int
    restarts: int


class Metrics(Collector):
    """The pool's numbers in a registry of their own, updated by the root."""

    def __init__(self, states: Iterable[str | enum.Enum] = ()) -> None:
        # ``states``: every state name, so each one is exported (as 0) before any slot
        # reaches it, and an alert on ``state="backoff"`` has a series to watch.
        self._states = {_name(state) for state in states}
        self._slots: dict[str, SlotSample] = {}
        self._exits: Counter[tuple[str, int]] = Counter()
        self._api_calls: dict[str, int] = {}
        self._rate_remaining: int | None = None
        self.registry = CollectorRegistry()
        self._reconcile = Histogram(
            "runnerctl_reconcile_duration_seconds",
            "Time one reconcile pass of the root took.",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    def observe_slot(
        self, name: str, state: str | enum.Enum, busy: bool | None, jobs: int, restarts: int
    ) -> None:
        """Record a slot's latest state.

        ``busy``: True while its runner runs a job, False while its runner is up and
        idle, None while it has no runner. ``jobs`` and ``restarts`` are the slot's
        totals so far.
        """
        self._states.add(_name(state))
        self._slots[name] = SlotSample(_name(state), busy, jobs, restarts)

    def forget_slot(self, name: str) -> None:
        """Drop every series of a slot that left the configuration."""
        self._slots.pop(name, None)
        self._api_calls.pop(name, None)
        for key in [key for key in self._exits if key[0] == name]:
            del self._exits[key]

    def runner_exited(self, slot: str, code: int) -> None:
        """Count one runner exit with its exit code."""
        self._exits[(slot, code)] += 1

    def reconcile_took(self, seconds: float) -> None:
        """Record the duration of one reconcile pass."""
        self._reconcile.observe(seconds)

    def api(self, calls: int, remaining: int | None, process: str = "root") -> None:
        """Record GitHub API use as one process reported it.

        ``calls``: the REST calls that process has made so far (a worker that restarts
        starts again from 0, which Prometheus reads as a counter reset). ``remaining``:
        the rate limit left according to its latest response; the newest report wins,
        since every process spends the same budget. None keeps the previous value.
        """
        self._api_calls[process] = calls
        if remaining is not None:
            self._rate_remaining = remaining

    def render(self) -> bytes:
        """The exposition text, as a scrape receives it."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """Build the families from the current snapshot (called by the registry)."""
        yield from self._pool_families()
        yield from self._slot_families()
        yield from self._github_families()
        info = GaugeMetricFamily("runnerctl_build_info", "runnerctl version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _pool_families(self) -> Iterator[Metric]:
        by_state = Counter(sample.state for sample in self._slots.values())
        slots = GaugeMetricFamily("runnerctl_slots", "Runner slots by state.", labels=["state"])
        for state in sorted(self._states):
            slots.add_metric([state], by_state[state])
        yield slots

        busy = sum(1 for sample in self._slots.values() if sample.busy is True)
        idle = sum(1 for sample in self._slots.values() if sample.busy is False)
        yield GaugeMetricFamily("runnerctl_runners_busy", "Runners running a job.", value=busy)
        yield GaugeMetricFamily("runnerctl_runners_idle", "Runners up, waiting for a job.", idle)

    def _slot_families(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "runnerctl_jobs_completed", "Jobs a slot's runners finished.", labels=["slot"]
        )
        restarts = CounterMetricFamily(
            "runnerctl_slot_restarts",
            "Times a slot's worker or runner was restarted.",
            labels=["slot"],
        )
        for name, sample in sorted(self._slots.items()):
            jobs.add_metric([name], sample.jobs)
            restarts.add_metric([name], sample.restarts)
        exits = CounterMetricFamily(
            "runnerctl_runner_exits", "Runner exits by exit code.", labels=["slot", "code"]
        )
        for (slot, code), count in sorted(self._exits.items()):
            exits.add_metric([slot, str(code)], count)
        yield from (jobs, restarts, exits)

    def _github_families(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "runnerctl_github_api_calls", "GitHub REST calls made, by process.", labels=["process"]
        )
        for process, count in sorted(self._api_calls.items()):
            calls.add_metric([process], count)
        yield calls
        if self._rate_remaining is not None:
            yield GaugeMetricFamily(
                "runnerctl_github_rate_limit_remaining",
                "GitHub API requests left in the current rate-limit window.",
                self._rate_remaining,
            )


def _name(state: str | enum.Enum) -> str:
    return str(state.value) if isinstance(state, enum.Enum) else state


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as a (host, port) pair; ConfigError when malformed."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            [f"manager.metrics_address: {address!r} is not host:port (e.g. 127.0.0.1:9464)"]
        )
    return host, int(port)


class MetricsEndpoint:
    """A listening socket the root waits on; each ``handle_ready()`` answers one scrape."""

    def __init__(self, metrics: Metrics, host: str, port: int, timeout: float = 2.0) -> None:
        self.metrics = metrics
        self.timeout = timeout
        self._listener = _listen(host, port)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        if not _is_loopback(self.address[0]):
            log.warning("metrics: %s:%s is reachable from other hosts", *self.address)
        # Forked workers must not keep the port open after the root is gone.
        os.register_at_fork(after_in_child=_closer(self))
        log.info("metrics: listening on %s:%s", *self.address)

    @classmethod
    def open(cls, address: str, metrics: Metrics, timeout: float = 2.0) -> MetricsEndpoint:
        """Listen on ``manager.metrics_address``."""
        host, port = parse_address(address)
        return cls(metrics, host, port, timeout)

    def fileno(self) -> int:
        """The listening socket: readable when a scrape is waiting to be accepted."""
        return self._listener.fileno()

    def handle_ready(self) -> None:
        """Accept one waiting connection and answer it; return at once if none waits."""
        try:
            conn, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # out of descriptors, aborted connection
            log.warning("metrics: accept failed: %s", error)
            return
        with conn:
            try:
                self._answer(conn, time.monotonic() + self.timeout)
            except (OSError, ValueError) as error:
                log.debug("metrics: dropped a scrape from %s: %s", peer[0], error)

    def close(self) -> None:
        """Stop listening."""
        self._listener.close()

    def _answer(self, conn: socket.socket, deadline: float) -> None:
        head = _read_head(conn, deadline)
        method, path = _request_line(head)
        if path.split("?", 1)[0] != "/metrics":
            status, body, kind = "404 Not Found", b"not found; try /metrics\n", "text/plain"
        elif method not in ("GET", "HEAD"):
            status, body, kind = "405 Method Not Allowed", b"use GET\n", "text/plain"
        else:
            status, body, kind = "200 OK", self.metrics.render(), CONTENT_TYPE_LATEST
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        _settimeout(conn, deadline)
        conn.sendall(header if method == "HEAD" else header + body)


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise ConfigError([f"manager.metrics_address: cannot resolve {host!r}: {error}"]) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(16)
    except OSError as error:
        sock.close()
        raise ConfigError(
            [
                f"manager.metrics_address: cannot listen on {host}:{port} ({error.strerror}); "
                "choose a free port or leave metrics_address unset"
            ]
        ) from None
    sock.setblocking(False)
    return sock


def _read_head(conn: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > REQUEST_LIMIT:
            raise ValueError("request head too large")
        _settimeout(conn, deadline)
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _request_line(head: bytes) -> tuple[str, str]:
    parts = head.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request: {parts[:1]!r}")
    return parts[0], parts[1]


def _settimeout(conn: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("scrape took longer than the metrics timeout")
    conn.settimeout(left)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _closer(endpoint: MetricsEndpoint) -> Callable[[], None]:
    # A weak reference, so the fork hook (which cannot be unregistered) does not keep a
    # closed endpoint alive.
    ref = weakref.ref(endpoint)

    def close_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    return close_in_child
