"""The systemd unit passes systemd-analyze, and sd_notify messages arrive as systemd reads them."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.config import ManagerSettings
from runnerctl.systemd import Notifier, watchdog_interval, without_notify_variables
from tests.processes import wait_for

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "runnerctl-manager.service"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket bound where systemd's notify socket would be."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def receive_all(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``, without blocking."""
    received = []
    sock.setblocking(False)
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(5)


def unit_values(key: str) -> list[str]:
    pattern = re.compile(rf"^{key}=(.*)$", re.MULTILINE)
    return pattern.findall(UNIT.read_text())


@pytest.mark.timeout(60)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is required (.ci/run installs the systemd package)"
    # The installed unit points at /opt/runnerctl/venv; point this copy at a Python that
    # exists here so verify can resolve ExecStart.
    text = UNIT.read_text()
    assert "ExecStart=/opt/runnerctl/venv/bin/python3 -m runnerctl.manager run" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/runnerctl/venv/bin/python3", sys.executable))

    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=50, cwd=tmp_path
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    about_unit = [line for line in output.splitlines() if UNIT.name in line]
    assert about_unit == [], "\n".join(about_unit)


def test_unit_matches_the_manager_defaults() -> None:
    defaults = ManagerSettings()
    # systemd must not kill the tree before the root's own drain bound has passed.
    (timeout_stop,) = unit_values("TimeoutStopSec")
    assert int(timeout_stop) >= defaults.stop_timeout + 30
    # The directories systemd creates are the ones the manager uses by default.
    (runtime,) = unit_values("RuntimeDirectory")
    (cache,) = unit_values("CacheDirectory")
    assert defaults.state_dir == Path("/run") / runtime
    assert defaults.cache_dir == Path("/var/cache") / cache
    assert unit_values("KillMode") == ["mixed"]
    assert unit_values("NotifyAccess") == ["main"]


def test_unit_restart_loop_cannot_exhaust_the_start_limit() -> None:
    (interval,) = unit_values("StartLimitIntervalSec")
    (burst,) = unit_values("StartLimitBurst")
    (restart_sec,) = unit_values("RestartSec")
    automatic_starts = int(interval) // int(restart_sec) + 1
    assert automatic_starts < int(burst)


def test_notifications_arrive_in_order(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})

    notifier.ready("3 slots: 3 idle, 0 busy, 0 backing off")
    notifier.status("3 slots: 2 idle, 1 busy, 0 backing off")
    notifier.reloading()
    notifier.ready()
    notifier.stopping()
    notifier.watchdog()

    received = [listener.recv(4096) for _ in range(6)]
    assert received[0] == b"READY=1\nSTATUS=3 slots: 3 idle, 0 busy, 0 backing off"
    assert received[1] == b"STATUS=3 slots: 2 idle, 1 busy, 0 backing off"
    reloading, monotonic = received[2].split(b"\n")
    assert reloading == b"RELOADING=1"
    sent_usec = int(monotonic.removeprefix(b"MONOTONIC_USEC="))
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 <= now_usec - sent_usec < 60_000_000
    assert received[3:] == [b"READY=1", b"STOPPING=1", b"WATCHDOG=1"]
    notifier.close()


def test_status_cannot_inject_assignments(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})

    notifier.status("bad\nREADY=1")

    assert listener.recv(4096) == b"STATUS=bad READY=1"
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"runnerctl-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})

        notifier.ready("up")

        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})

    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready("up")
    notifier.watchdog()
    assert notifier.watchdog_due_in() is None


def test_unusable_socket_value_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runnerctl.systemd"):
        notifier = Notifier({"NOTIFY_SOCKET": "relative/path"})

    assert not notifier.enabled
    assert "ignoring NOTIFY_SOCKET='relative/path'" in caplog.text


def test_send_failure_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})

    with caplog.at_level(logging.DEBUG, logger="runnerctl.systemd"):
        notifier.ready("up")
        notifier.status("still up")
        notifier.stopping()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()
    notifier.close()


def test_full_socket_drops_instead_of_blocking(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})

    # Nobody reads the listener, so its queue fills; a blocking send would hang here.
    results = [notifier.send("WATCHDOG=1") for _ in range(5000)]

    assert results[0] is True
    assert results[-1] is False
    assert receive_all(listener)[0] == b"WATCHDOG=1"
    notifier.close()


def test_forked_child_stays_silent(listener: socket.socket, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    notifier.status("parent")

    pid = os.fork()
    if pid == 0:  # the child: a worker that still holds the root's Notifier
        code = 0 if not notifier.enabled and not notifier.send("READY=1") else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    notifier.status("parent again")
    assert receive_all(listener) == [b"STATUS=parent", b"STATUS=parent again"]
    notifier.close()


def test_watchdog_interval_is_half_the_timeout() -> None:
    pid = os.getpid()

    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(pid)}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(pid + 1)}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_pings_when_due(listener: socket.socket, tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000"}
    notifier = Notifier(env)
    assert notifier.watchdog_interval == 0.1

    due_in = notifier.watchdog_due_in()
    assert due_in is not None and 0 < due_in <= 0.1
    wait_for(lambda: notifier.watchdog_due_in() == 0.0, timeout=10)
    notifier.watchdog_if_due()

    assert listener.recv(4096) == b"WATCHDOG=1"
    due_after = notifier.watchdog_due_in()
    assert due_after is not None and due_after > 0
    notifier.close()


def test_child_environment_loses_notify_variables() -> None:
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "60000000",
        "WATCHDOG_PID": "1",
        "PATH": "/usr/bin",
    }

    assert without_notify_variables(env) == {"PATH": "/usr/bin"}
    assert "NOTIFY_SOCKET" in env
