"""The root with real forks, real signals and real config files, around a small worker body.

The worker body here stands in for the runner-keeping worker (the root takes its
worker's entry point as a parameter): it reports idle, notes each start and each stop
request in the slot's folder, and obeys the control channel, so these tests see the
root's own behaviour: spawn, reap, restart, reconcile, drain, escalate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerctl.config import load_config
from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.root import ESCALATION_STATUS, Root
from tests.integration.tree import PublishedStatus
from tests.processes import alive, wait_for

FORK = multiprocessing.get_context("fork")


def small_worker(slot: Any, config: Any, channel: msg.Channel) -> int:
    """Report idle, then obey stop; ``TEST_BEHAVIOUR=crash`` in the slot's env exits at once."""
    folder = Path(slot.directory)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "starts.log").open("a") as log:
        log.write(f"{time.monotonic()} {os.getpid()}\n")
    if slot.env.get("TEST_BEHAVIOUR") == "crash":
        return 1
    channel.send(msg.Report(slot=slot.name, state="idle", runner_version="1.0.0"))
    while True:
        try:
            message = channel.receive()
        except msg.PeerGone:
            (folder / "orphaned").write_text(str(os.getpid()))
            return 0
        if isinstance(message, msg.Update):
            # Move "between jobs": take a moment, then report the new version.
            began = time.monotonic()
            time.sleep(0.4)
            with (folder / "updates.log").open("a") as log:
                log.write(f"{began} {time.monotonic()}\n")
            report = msg.Report(slot=slot.name, state="idle", runner_version=message.version)
            channel.send(report)
        if isinstance(message, msg.Stop):
            with (folder / "stops.log").open("a") as log:
                log.write(f"{message.mode} {message.deregister}\n")
            channel.send(msg.Report(slot=slot.name, state="stopped"))
            return 0


class Pool(PublishedStatus):
    """A root running in its own process group, and the files it is driven by."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "pool.yaml"
        self.state = folder / "state"
        self.runners = folder / "runners"
        self.process: Any = None

    def write(self, runners: str, manager: str = "") -> None:
        """Write the config: ``runners`` is the YAML list body, ``manager`` extra keys."""
        self.config.write_text(
            f"manager:\n  state_dir: {self.state}\n  interval: 0.3\n  stop_timeout: 6\n"
            f"{manager}runners:\n{runners}"
        )

    def start(self, janitor: Any = None, notify: Path | None = None) -> None:
        self.process = FORK.Process(
            target=_run_root, args=(self.config, self.folder, janitor, notify)
        )
        self.process.start()

    def starts(self, name: str) -> int:
        path = self.runners / name / "starts.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def stops(self, name: str) -> list[str]:
        path = self.runners / name / "stops.log"
        return path.read_text().splitlines() if path.exists() else []

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def exit_code(self, timeout: float = 30) -> int:
        self.process.join(timeout)
        assert self.process.exitcode is not None, "root did not exit"
        return int(self.process.exitcode)


def _run_root(config: Path, folder: Path, janitor: Any, notify: Path | None) -> None:
    os.setpgrp()  # one group for the root and its workers, so a test can end them all
    logging.basicConfig(filename=folder / "root.log", level=logging.INFO, force=True)
    if notify is not None:
        os.environ["NOTIFY_SOCKET"] = str(notify)
    root = Root(
        config,
        load=load_unless_told_to_fail,
        worker_main=small_worker,
        janitor_main=janitor,
    )
    os._exit(root.run())


def load_unless_told_to_fail(path: Path) -> Any:
    """The real loader, except that a file saying ``# fail`` breaks it unexpectedly."""
    if "# fail" in path.read_text():
        raise RuntimeError("a loader bug")
    return load_config(path, environ={})


def janitor_announcing(version: str) -> Any:
    """A janitor body that reports ``version`` as the newest runner, then idles."""

    def body(config: Any, channel: msg.Channel) -> int:
        channel.send(msg.LatestVersion(version=version))
        with contextlib.suppress(msg.PeerGone):
            while not isinstance(channel.receive(), msg.Stop):
                pass
        return 0

    return body


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    made = Pool(tmp_path)
    try:
        yield made
    finally:
        if made.process is not None and made.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(made.process.pid, signal.SIGKILL)
            made.process.join(10)


def items(*names: str, behaviour: str = "idle", pool: Pool | None = None) -> str:
    assert pool is not None
    lines = []
    for name in names:
        lines.append(
            f"  - name: {name}\n    repo: octo/app\n    base_dir: {pool.runners}\n"
            f"    env: {{TEST_BEHAVIOUR: {behaviour}}}\n"
        )
    return "".join(lines)


def has(condition: Callable[[], Any]) -> Any:
    return wait_for(condition, timeout=30)


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode().strip()


def test_pool_comes_up_and_is_named_in_ps(pool: Pool) -> None:
    pool.write(items("a", "b", "c", pool=pool))
    pool.start()

    has(lambda: pool.states() == {"a": "idle", "b": "idle", "c": "idle"})
    root = pool.status()["root"]
    assert root["pid"] == pool.process.pid
    assert cmdline(pool.process.pid) == f"runnerctl-manager: root {pool.config} (3 slots)"
    worker = pool.slots()["b"]["worker_pid"]
    assert cmdline(worker).startswith("runnerctl-manager: worker b")
    assert [pool.starts(name) for name in "abc"] == [1, 1, 1]


def test_a_killed_worker_is_restarted_alone(pool: Pool) -> None:
    pool.write(items("a", "b", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle", "b": "idle"})
    before = {name: slot["worker_pid"] for name, slot in pool.slots().items()}

    os.kill(before["a"], signal.SIGKILL)

    has(lambda: pool.slots()["a"]["worker_pid"] not in (None, before["a"]))
    has(lambda: pool.states()["a"] == "idle")
    after = pool.slots()
    assert after["b"]["worker_pid"] == before["b"]
    assert after["a"]["worker_restarts"] == 1
    assert (pool.starts("a"), pool.starts("b")) == (2, 1)


def test_reload_adds_removes_and_replaces_slots(pool: Pool) -> None:
    pool.write(items("keep", "drop", "change", pool=pool))
    pool.start()
    has(lambda: set(pool.states().values()) == {"idle"} and len(pool.states()) == 3)
    before = {name: slot["worker_pid"] for name, slot in pool.slots().items()}

    pool.write(
        items("keep", "new", pool=pool)
        + items("change", pool=pool).replace("octo/app", "octo/other")
    )
    pool.signal(signal.SIGHUP)

    has(lambda: pool.states() == {"keep": "idle", "new": "idle", "change": "idle"})
    has(lambda: pool.slots()["change"]["worker_pid"] != before["change"])
    assert pool.slots()["keep"]["worker_pid"] == before["keep"]
    assert pool.stops("drop") == ["drain True"]
    assert pool.stops("change") == ["drain True"]
    assert pool.stops("keep") == []
    assert not alive(before["drop"])


def test_reconcile_runs_on_its_interval_without_a_signal(pool: Pool) -> None:
    pool.write(items("a", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle"})
    first = pool.status()["root"]["last_reconcile"]

    pool.write(items("a", "b", pool=pool))

    has(lambda: pool.states() == {"a": "idle", "b": "idle"})
    assert pool.status()["root"]["last_reconcile"] > first


def test_an_invalid_config_is_logged_and_ignored(pool: Pool) -> None:
    pool.write(items("a", "b", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle", "b": "idle"})

    pool.write(items("a", pool=pool) + "  - name: b\n    repo: not a repo\n")
    pool.signal(signal.SIGHUP)

    has(lambda: pool.status()["root"]["config_error"])
    assert pool.states() == {"a": "idle", "b": "idle"}
    assert "config invalid: " in (pool.folder / "root.log").read_text()
    assert pool.stops("a") == pool.stops("b") == []


def test_sigterm_drains_every_worker_and_exits(pool: Pool) -> None:
    pool.write(items("a", "b", pool=pool) + "    daemonize: false\n")
    pool.start()
    has(lambda: pool.states() == {"a": "idle", "b": "idle"})
    workers = [slot["worker_pid"] for slot in pool.slots().values()]

    started = time.monotonic()
    pool.signal(signal.SIGTERM)

    assert pool.exit_code() == 0
    assert time.monotonic() - started < 6
    assert pool.stops("a") == ["detach False"]  # daemonized: left for the next manager
    assert pool.stops("b") == ["drain True"]  # ephemeral, not daemonized: drained, removed
    assert not any(alive(pid) for pid in workers)
    assert pool.status()["root"]["phase"] == "stopped"


def test_sigint_stops_every_worker_now(pool: Pool) -> None:
    pool.write(items("a", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle"})

    pool.signal(signal.SIGINT)

    assert pool.exit_code() == 0
    assert pool.stops("a") == ["now True"]


def test_workers_notice_a_dead_root_from_the_pipe(pool: Pool) -> None:
    pool.write(items("a", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle"})
    worker = pool.slots()["a"]["worker_pid"]

    os.kill(pool.process.pid, signal.SIGKILL)

    has(lambda: (pool.runners / "a" / "orphaned").exists())
    has(lambda: not alive(worker))


def test_one_crash_looping_slot_backs_off_without_taking_the_pool_down(pool: Pool) -> None:
    pool.write(
        items("good", "good2", pool=pool) + items("bad", behaviour="crash", pool=pool),
        manager="  max_restarts: 2\n  restart_period: 30\n",
    )
    pool.start()

    has(lambda: pool.states().get("bad") == "backoff")
    window_start = pool.starts("bad")
    time.sleep(2.5)  # a window in which to count starts: backoff spaces them 1 s, 2 s, ...
    assert pool.starts("bad") - window_start <= 2
    assert pool.slots()["bad"]["retry_at"] is not None
    assert pool.states()["good"] == pool.states()["good2"] == "idle"
    assert pool.process.is_alive()


def test_most_slots_crash_looping_makes_the_root_give_up(pool: Pool) -> None:
    pool.write(
        items("x", "y", behaviour="crash", pool=pool) + items("z", pool=pool),
        manager="  max_restarts: 2\n  restart_period: 30\n",
    )
    pool.start()

    assert pool.exit_code() == ESCALATION_STATUS
    assert "gave up: 2 of 3 slots crash-looping" in (pool.folder / "root.log").read_text()
    assert pool.stops("z") == ["detach True"]  # daemonized: left for systemd's next root


def test_status_json_is_valid_at_every_read(pool: Pool) -> None:
    pool.write(items("a", "b", pool=pool))
    pool.start()
    has(lambda: pool.states() == {"a": "idle", "b": "idle"})
    for _ in range(50):
        json.loads((pool.state / "status.json").read_text())


def test_updates_roll_through_the_latest_slots_a_few_at_a_time(pool: Pool) -> None:
    names = [f"s{n}" for n in range(8)]
    pool.write(
        items(*names, pool=pool) + "  - name: pinned\n    repo: octo/app\n"
        f"    base_dir: {pool.runners}\n    version: 1.0.0\n"
    )
    pool.start(janitor=janitor_announcing("2.0.0"))

    def rolled() -> bool:
        versions = [str(slot["runner_version"]) for slot in pool.slots().values()]
        return sorted(versions) == ["1.0.0"] + ["2.0.0"] * 8

    has(rolled)
    spans = []
    for name in names:
        lines = (pool.runners / name / "updates.log").read_text().splitlines()
        assert len(lines) == 1
        spans.append(tuple(float(x) for x in lines[0].split()))
    most_at_once = max(sum(1 for b, e in spans if b <= moment < e) for moment, _ in spans)
    assert most_at_once <= 2  # a quarter of the 9 slots, at least one
    assert not (pool.runners / "pinned" / "updates.log").exists()
    assert pool.slots()["pinned"]["runner_version"] == "1.0.0"


def test_systemd_hears_ready_status_reloading_and_stopping(pool: Pool) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = pool.folder / "notify.sock"
    listener.bind(str(address))
    listener.settimeout(30)
    pool.write(items("a", "b", pool=pool))
    try:
        pool.start(notify=address)

        def next_containing(text: str) -> str:
            while True:
                datagram = listener.recv(4096).decode()
                if text in datagram:
                    return datagram

        assert "STATUS=2 slots: 2 idle" in next_containing("READY=1")
        pool.signal(signal.SIGHUP)
        next_containing("RELOADING=1")
        next_containing("READY=1")
        pool.signal(signal.SIGTERM)
        next_containing("STOPPING=1")
        assert pool.exit_code() == 0
    finally:
        listener.close()


def test_an_unwritable_state_dir_does_not_stop_supervision(pool: Pool) -> None:
    (pool.folder / "blocker").write_text("a file where a folder should be")
    pool.state = pool.folder / "blocker" / "state"
    pool.write(items("a", pool=pool))
    pool.start()

    log = pool.folder / "root.log"
    has(lambda: log.exists() and "status not written" in log.read_text())
    has(lambda: pool.starts("a") == 1)
    assert pool.process.is_alive()
    pool.signal(signal.SIGTERM)
    assert pool.exit_code() == 0
    assert log.read_text().count("status not written") == 1


def test_a_failing_root_stops_its_workers_before_it_exits(pool: Pool) -> None:
    pool.write(items("a", "b", pool=pool) + "    daemonize: false\n")
    pool.start()
    has(lambda: pool.states() == {"a": "idle", "b": "idle"})
    workers = [slot["worker_pid"] for slot in pool.slots().values()]

    pool.config.write_text(pool.config.read_text() + "# fail\n")
    pool.signal(signal.SIGHUP)

    assert pool.exit_code() != 0
    assert not any(alive(pid) for pid in workers)
    assert (pool.stops("a"), pool.stops("b")) == (["detach True"], ["now True"])
    assert "root failing: stopping every worker" in (pool.folder / "root.log").read_text()
