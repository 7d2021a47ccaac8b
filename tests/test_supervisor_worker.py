"""The worker's decisions, with real processes behind its runner seam.

A worker takes a factory for its slot's runner operations. Here those operations run
a small Python "listener" script in the slot's folder: a real process in its own
session, started and adopted through ``RunnerProcess`` and observed through its log
lines exactly like the real listener. The script takes jobs from a ``job`` file and
exits on an ``exit`` file, so each test drives the worker's decisions precisely.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerctl.config import load_config
from runnerctl.errors import ConfigError, RunnerBusy
from runnerctl.runner import pidfile
from runnerctl.runner.process import RunnerProcess
from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.worker import Worker
from tests.processes import alive, wait_for

FORK = multiprocessing.get_context("fork")

LISTENER = f"""#!{sys.executable}
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if os.path.exists("crash"):
    sys.exit(1)
print("Listening for Jobs", flush=True)
while True:
    if os.path.exists("exit"):
        code = int(open("exit").read() or 0)
        os.remove("exit")
        sys.exit(code)
    if os.path.exists("job"):
        seconds = float(open("job").read() or 0)
        os.remove("job")
        print("Running job: build", flush=True)
        os.spawnv(os.P_WAIT, "bin/Runner.Worker", ["Runner.Worker", str(seconds)])
        print("Job build completed with result: Succeeded", flush=True)
        if os.path.exists("ephemeral"):
            sys.exit(0)
    time.sleep(0.05)
"""

JOB = f"""#!{sys.executable}
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
time.sleep(float(sys.argv[1]))
"""


class ScriptRunner:
    """The slot's runner operations over the listener script; ``remove`` is recorded."""

    def __init__(self, slot: Any) -> None:
        self.slot = slot
        self.folder = Path(slot.directory)

    def note(self, line: str) -> None:
        with (self.folder / "history").open("a") as out:
            out.write(f"{line}\n")

    def install(self) -> str:
        if (self.folder / "broken-config").exists():
            raise ConfigError(["runners[0].repo: 'x' is not owner/repo"])
        (self.folder / "bin").mkdir(parents=True, exist_ok=True)
        program = self.folder / "bin" / "Runner.Listener"
        program.write_text(LISTENER)
        program.chmod(0o755)
        job = self.folder / "bin" / "Runner.Worker"
        job.write_text(JOB)
        job.chmod(0o755)
        if self.slot.ephemeral:
            (self.folder / "ephemeral").write_text("")
        return "9.9.9" if self.slot.version == "latest" else str(self.slot.version)

    def register(self) -> object:
        self.note("registered")
        return object()

    def start(self, registration: object) -> RunnerProcess:
        self.note("started")
        return RunnerProcess.spawn(self.slot.name, self.folder, {"PATH": os.environ["PATH"]})

    def adopt(self) -> RunnerProcess | None:
        return RunnerProcess.adopt(self.slot.name, self.folder)

    def finish_update(self) -> bool:
        self.note("update-settled")
        return True

    def remove(self) -> None:
        busy_once = self.folder / "busy-once"
        if busy_once.exists():
            busy_once.unlink()
            self.note("refused")
            raise RunnerBusy("runner ci is running a job; GitHub refused to delete it")
        listener = pidfile.read(self.folder / pidfile.PIDFILE_NAME)
        self.note("listener-up" if listener is not None and listener.matches() else "no-listener")
        self.note("removed")


class Slot:
    """A worker and its folder, driven from the test."""

    def __init__(self, folder: Path, **settings: object) -> None:
        config = folder / "pool.yaml"
        extra = "".join(f"    {k}: {str(v).lower()}\n" for k, v in settings.items())
        config.write_text(
            f"manager:\n  state_dir: {folder / 'state'}\n"
            f"runners:\n  - name: w\n    repo: octo/app\n    base_dir: {folder}\n{extra}"
        )
        self.slot = load_config(config, environ={}).slots()[0]
        self.folder = Path(self.slot.directory)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: Any = None
        self.channel: msg.Channel | None = None
        self.reports: list[msg.Report] = []
        self.notices: list[msg.Notice] = []

    def start(self) -> None:
        ours, theirs = FORK.Pipe()
        self.process = FORK.Process(target=_work, args=(self.slot, theirs, ours))
        self.process.start()
        theirs.close()
        self.channel = msg.Channel(ours)
        self.reports = []

    def pump(self) -> None:
        assert self.channel is not None
        try:
            while self.channel.connection.poll(0):
                message = self.channel.receive()
                if isinstance(message, msg.Report):
                    self.reports.append(message)
                elif isinstance(message, msg.Notice):
                    self.notices.append(message)
        except (msg.PeerGone, OSError):
            pass  # the worker (or the test) closed the pipe

    @property
    def last(self) -> msg.Report:
        self.pump()
        return self.reports[-1] if self.reports else msg.Report()

    def reached(self, state: str) -> msg.Report | None:
        self.pump()
        return next((r for r in reversed(self.reports) if r.state == state), None)

    def send(self, message: msg.Message) -> None:
        assert self.channel is not None
        self.channel.send(message)

    def history(self) -> list[str]:
        path = self.folder / "history"
        return path.read_text().split() if path.exists() else []

    def exit_code(self) -> int:
        self.process.join(30)
        assert self.process.exitcode is not None, "worker did not exit"
        return int(self.process.exitcode)


def _work(slot: Any, connection: Any, parent_end: Any) -> None:
    parent_end.close()
    os._exit(Worker(slot, ScriptRunner, msg.Channel(connection)).run())


@pytest.fixture
def make_slot(tmp_path: Path) -> Iterator[Any]:
    made: list[Slot] = []

    def make(**settings: object) -> Slot:
        slot = Slot(tmp_path, **settings)
        made.append(slot)
        return slot

    yield make
    for slot in made:
        if slot.process is not None and slot.process.is_alive():
            slot.process.kill()
            slot.process.join(10)
        pid = slot.last.runner_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def has(condition: Any, timeout: float = 30) -> Any:
    return wait_for(condition, timeout=timeout)


def ignored_signals(pid: int) -> set[signal.Signals]:
    """The signals a process ignores (``SigIgn`` in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {sig for sig in signal.Signals if mask & (1 << (sig - 1))}
    return set()


def idle_runner(slot: Slot) -> int:
    report = has(lambda: slot.last.state == "idle" and slot.last.runner_pid and slot.last)
    return int(report.runner_pid)


def test_a_worker_installs_registers_starts_and_names_itself(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()

    runner = idle_runner(slot)
    states = [report.state for report in slot.reports]
    assert states[:4] == ["starting", "installing", "registering", "idle"]
    assert slot.last.runner_version == "9.9.9"
    assert alive(runner)
    assert ignored_signals(runner) & {signal.SIGINT, signal.SIGHUP, signal.SIGTERM} == set()
    title = Path(f"/proc/{slot.process.pid}/cmdline").read_bytes().rstrip(b"\0")
    assert title == b"runnerctl-manager: worker w [idle]"


def test_busy_and_idle_follow_the_runner_and_count_jobs(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    idle_runner(slot)

    (slot.folder / "job").write_text("0.5")

    has(lambda: slot.reached("busy"))
    has(lambda: slot.last.state == "idle" and slot.last.jobs_done == 1)


def test_drain_waits_for_the_job_then_deregisters_before_stopping(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    runner = idle_runner(slot)
    (slot.folder / "job").write_text("2")
    has(lambda: slot.last.state == "busy")

    slot.send(msg.Stop(mode="drain", deregister=True))

    has(lambda: slot.last.state == "draining")
    assert alive(runner)
    assert "removed" not in slot.history()
    assert slot.exit_code() == 0
    assert slot.history()[-1] == "removed"
    assert (slot.folder / "runner.log").read_text().count("completed with result: Succeeded") == 1
    assert not alive(runner)


def test_a_job_taken_while_deregistering_keeps_the_drain_going(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    runner = idle_runner(slot)
    (slot.folder / "busy-once").write_text("")

    slot.send(msg.Stop(mode="drain", deregister=True))

    has(lambda: slot.reached("draining"))
    assert slot.exit_code() == 0
    # GitHub refused the first delete; the runner was left alone until one succeeded.
    assert slot.history()[-3:] == ["refused", "listener-up", "removed"]
    assert not alive(runner)


def test_stop_now_does_not_wait_for_the_job(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    runner = idle_runner(slot)
    (slot.folder / "job").write_text("60")
    has(lambda: slot.last.state == "busy")

    slot.send(msg.Stop(mode="now"))

    assert slot.exit_code() == 0
    assert not alive(runner)
    assert "removed" not in slot.history()


def test_detach_leaves_a_daemonized_runner_for_the_next_worker(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=True)
    slot.start()
    runner = idle_runner(slot)

    slot.send(msg.Stop(mode="detach"))
    assert slot.exit_code() == 0
    assert alive(runner)

    slot.start()
    report = has(lambda: slot.reached("idle"))
    assert report.runner_pid == runner
    assert report.reason == "adopted"
    assert slot.history().count("started") == 1


def test_a_worker_killed_hard_is_succeeded_by_one_that_adopts(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    runner = idle_runner(slot)
    (slot.folder / "job").write_text("2")
    has(lambda: slot.last.state == "busy")

    slot.process.kill()
    slot.process.join(10)
    slot.start()

    report = has(lambda: slot.reached("busy"))
    assert report.runner_pid == runner
    has(lambda: slot.last.state == "idle" and slot.last.jobs_done == 1)
    assert slot.history().count("started") == 1


def test_without_a_root_a_plain_worker_stops_its_runner(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    runner = idle_runner(slot)

    slot.channel.close()

    assert slot.exit_code() == 0
    assert not alive(runner)


def test_without_a_root_a_daemonized_runner_keeps_running(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=True)
    slot.start()
    runner = idle_runner(slot)

    slot.channel.close()

    assert slot.exit_code() == 0
    assert alive(runner)


def test_an_ephemeral_runner_is_followed_by_the_next_at_once(make_slot: Any) -> None:
    slot = make_slot(ephemeral=True, daemonize=False)
    slot.start()
    first = idle_runner(slot)

    (slot.folder / "job").write_text("0.2")

    has(lambda: slot.last.runner_pid not in (None, first) and slot.last.state == "idle")
    assert slot.last.jobs_done == 1
    assert slot.last.restarts == 0
    assert not any(report.state == "backoff" for report in slot.reports)


def test_a_crashing_persistent_runner_backs_off(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    (slot.folder / "crash").write_text("")
    slot.start()
    has(lambda: slot.reached("backoff"))

    window_start = len(slot.history())
    time.sleep(4)  # a measured window: backoff spaces the starts 1 s, 2 s, 4 s apart
    starts = slot.history()[window_start:].count("started")

    assert 1 <= starts <= 3
    assert slot.last.retry_at is not None or slot.last.state != "backoff"
    assert slot.last.restarts >= 2
    slot.send(msg.Stop(mode="now"))
    assert slot.exit_code() == 0


def test_a_config_error_is_reported_and_backed_off_not_retried(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    (slot.folder / "broken-config").write_text("")
    slot.start()

    report = has(lambda: slot.reached("backoff"))
    assert report.retry_at is not None and report.retry_at - time.time() > 200
    assert "not owner/repo" in slot.notices[0].text
    assert "registered" not in slot.history()

    slot.send(msg.Stop(mode="drain", deregister=True))
    assert slot.exit_code() == 0
    assert "removed" not in slot.history()  # nothing was ever registered


def test_an_update_waits_for_the_job_then_relaunches_at_once(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    first = idle_runner(slot)
    (slot.folder / "job").write_text("1.5")
    has(lambda: slot.last.state == "busy")

    slot.send(msg.Update(version="10.0.0"))

    has(lambda: slot.last.runner_pid not in (None, first) and slot.last.state == "idle")
    log = (slot.folder / "runner.log").read_text()
    assert "completed with result: Succeeded" in log
    assert slot.history().count("started") == 2
    assert not any(report.state == "backoff" for report in slot.reports)
    assert slot.last.restarts == 0
    assert slot.last.runner_version == "10.0.0"  # the exact version, not latest again


def test_an_adopted_runner_keeps_its_real_start_time(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=True)
    slot.start()
    idle_runner(slot)
    started = slot.last.runner_started
    slot.send(msg.Stop(mode="detach"))
    assert slot.exit_code() == 0
    time.sleep(2)  # let the runner age, so that the adoption's own moment would show

    slot.start()
    report = has(lambda: slot.reached("idle"))
    assert report.reason == "adopted"
    assert abs(report.runner_started - started) < 1


def test_a_runner_that_updated_itself_is_restarted_without_backoff(make_slot: Any) -> None:
    slot = make_slot(ephemeral=False, daemonize=False)
    slot.start()
    first = idle_runner(slot)

    (slot.folder / "exit").write_text("3")

    has(lambda: slot.last.runner_pid not in (None, first) and slot.last.state == "idle")
    assert slot.history() == ["registered", "started", "update-settled", "registered", "started"]
    assert slot.last.last_exit == 3
    assert not any(report.state == "backoff" for report in slot.reports)
