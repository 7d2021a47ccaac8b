"""RunnerProcess against a small real listener: start, events, exits, stop, adopt.

The fake listener below is a Python script installed as ``bin/Runner.Listener``. It
prints the real runner's console lines, runs each job in a ``bin/Runner.Worker`` child,
and takes its orders from a FIFO in its folder ("job NAME SECONDS", "exit CODE",
"spawn-updater"), so a test decides exactly when a job starts and ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl import procfs
from runnerctl.runner import pidfile
from runnerctl.runner.environment import Account
from runnerctl.runner.observe import Busy, Event, Idle, Online
from runnerctl.runner.process import RunnerProcess
from tests.processes import alive, wait_for

pytestmark = pytest.mark.timeout(60)

LISTENER = """#!{python}
import contextlib, os, signal, subprocess, sys, time

mode = os.environ.get("FAKE_MODE", "")
worker = None
job = None


def say(text):
    # Unbuffered: the signal handler writes too, possibly in the middle of a line.
    os.write(1, (text + "\\n").encode())


def finish(result):
    global worker, job
    name, worker, job = job, None, None
    say("Job %s completed with result: %s" % (name, result))


def shutdown(signum, frame):
    if mode == "stubborn":
        say("ignoring signal %d" % signum)
        return
    if worker is not None:
        # Not worker.wait(): the interrupted main thread holds Popen's wait lock.
        os.kill(worker.pid, signal.SIGTERM)
        os.waitpid(worker.pid, 0)
        finish("Canceled")
    say("Exiting on signal %d" % signum)
    sys.exit(0)


signal.signal(signal.SIGINT, shutdown)
signal.signal(signal.SIGTERM, shutdown)
if not os.path.exists("control"):
    os.mkfifo("control")
say("Connected to GitHub")
say("Listening for Jobs")
control = open(os.open("control", os.O_RDWR), "r")
for line in control:
    verb, *args = line.split()
    if verb == "job":
        job = args[0]
        worker = subprocess.Popen([os.path.join("bin", "Runner.Worker"), args[1]])
        say("%s: Running job: %s" % (time.strftime("%Y-%m-%d %H:%M:%SZ"), job))
        with contextlib.suppress(ChildProcessError):
            worker.wait()
        finish("Succeeded")
    elif verb == "say":
        say(" ".join(args))
    elif verb == "spawn-updater":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    elif verb == "exit":
        sys.exit(int(args[0]))
"""

WORKER = """#!{python}
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
time.sleep(float(sys.argv[1]))
"""


def make_runner_dir(base: Path, name: str = "ci-1") -> Path:
    """A runner folder holding the fake listener and worker."""
    directory = base / name
    (directory / "bin").mkdir(parents=True)
    for program, text in (("Runner.Listener", LISTENER), ("Runner.Worker", WORKER)):
        path = directory / "bin" / program
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
    return directory


def order(directory: Path, line: str) -> None:
    """Send the fake listener one order through its FIFO."""
    fifo = directory / "control"
    wait_for(fifo.exists, timeout=20)
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def next_events(process: RunnerProcess, want: type, timeout: float = 20) -> list[Event]:
    """Wait on the events descriptor (as a worker would) until an event of ``want``."""
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(event, want) for event in seen):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {want.__name__} event; saw {seen}"
        select.select([process.events_fileno()], [], [], remaining)
        seen.extend(process.read_events())
    return seen


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    return make_runner_dir(tmp_path)


@pytest.fixture
def spawned(runner_dir: Path) -> Iterator[list[RunnerProcess]]:
    """Processes a test starts; each one's whole group is killed afterwards."""
    started: list[RunnerProcess] = []
    try:
        yield started
    finally:
        for process in started:
            kill_group(process.pid)
            process.wait(10)
            process.close()


def start(directory: Path, started: list[RunnerProcess], **env: str) -> RunnerProcess:
    environ = {"PATH": os.environ["PATH"], **env}
    process = RunnerProcess.spawn("ci-1", directory, environ, Account.lookup(None))
    started.append(process)
    return process


def test_start_writes_pid_file_and_session(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    entry = pidfile.read(runner_dir / "runner.pid")
    assert entry == pidfile.record(process.pid)
    assert os.getsid(process.pid) == process.pid
    assert procfs.cwd(process.pid) == runner_dir
    next_events(process, Online)
    assert process.online
    assert "Listening for Jobs" in (runner_dir / "runner.log").read_text()


def test_output_goes_to_a_file_not_a_pipe(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    next_events(process, Online)
    stdout = os.readlink(f"/proc/{process.pid}/fd/1")
    assert stdout == str(runner_dir / "runner.log")
    assert os.readlink(f"/proc/{process.pid}/fd/2") == stdout


def test_busy_and_idle_events(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    next_events(process, Online)
    order(runner_dir, "job build 2")
    busy = [e for e in next_events(process, Busy) if isinstance(e, Busy)]
    assert busy[0].job == "build"
    # /proc confirms it: a Runner.Worker child under the listener (the line may race
    # the child's exec, so the event's own sighting is optional).
    worker = wait_for(process.worker, timeout=10)
    assert procfs.parent(worker) == process.pid
    assert busy[0].worker in (None, worker)
    assert process.busy and process.job == "build"
    idle = [e for e in next_events(process, Idle) if isinstance(e, Idle)]
    assert idle == [Idle("build", "Succeeded")]
    assert not process.busy
    assert process.exit() is None


def test_events_fd_stays_quiet_without_output(
    runner_dir: Path, spawned: list[RunnerProcess]
) -> None:
    process = start(runner_dir, spawned)
    next_events(process, Online)
    ready, _, _ = select.select([process.events_fileno()], [], [], 0.3)
    assert ready == []
    order(runner_dir, "say hello")
    ready, _, _ = select.select([process.events_fileno()], [], [], 20)
    assert ready == [process.events_fileno()]
    assert process.read_events() == []


@pytest.mark.parametrize(
    ("code", "action"),
    [(0, "done"), (1, "stopped"), (2, "retry"), (5, "conflict"), (7, "deprecated")],
)
def test_exit_codes_reach_the_pidfd(
    runner_dir: Path, spawned: list[RunnerProcess], code: int, action: str
) -> None:
    process = start(runner_dir, spawned)
    next_events(process, Online)
    assert process.exit() is None
    order(runner_dir, f"exit {code}")
    ready, _, _ = select.select([process.fileno()], [], [], 20)
    assert ready == [process.fileno()]
    result = process.exit()
    assert result is not None and result.code == code and result.action == action
    assert not (runner_dir / "runner.pid").exists()


def test_deprecated_version_on_exit_1(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    order(runner_dir, "say Runner version v2.300.0 is deprecated and cannot receive messages.")
    order(runner_dir, "exit 1")
    result = process.wait(20)
    assert result is not None and result.code == 1 and result.action == "deprecated"
    assert "latest" in result.meaning


def test_update_exit_leaves_the_group(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    order(runner_dir, "spawn-updater")
    updater = wait_for(lambda: procfs.children(process.pid), timeout=20)[0]
    try:
        order(runner_dir, "exit 3")
        # Exited but not yet collected: stop must read the code before sweeping the group.
        assert select.select([process.fileno()], [], [], 20)[0]
        result = process.stop(now=True, timeout=20)
        assert result is not None and result.action == "update" and result.keep_group
        assert alive(updater), "the updater in the group was killed"
    finally:
        kill_group(process.pid)


def test_stop_now_cancels_the_job(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    order(runner_dir, "job long 60")
    next_events(process, Busy)
    began = time.monotonic()
    result = process.stop(now=True, timeout=20)
    assert result is not None and result.code == 0
    assert time.monotonic() - began < 15
    log = (runner_dir / "runner.log").read_text()
    assert "Job long completed with result: Canceled" in log
    assert "Exiting on signal 2" in log


def test_drain_waits_for_the_job(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    order(runner_dir, "job short 2")
    next_events(process, Busy)
    result = process.stop(now=False, timeout=30)
    assert result is not None and result.code == 0
    log = (runner_dir / "runner.log").read_text()
    assert "Job short completed with result: Succeeded" in log
    assert "Canceled" not in log


def test_drain_timeout_never_cancels(runner_dir: Path, spawned: list[RunnerProcess]) -> None:
    process = start(runner_dir, spawned)
    order(runner_dir, "job long 60")
    next_events(process, Busy)
    assert process.stop(now=False, timeout=0.5) is None
    assert process.exit() is None and process.busy
    assert "Canceled" not in (runner_dir / "runner.log").read_text()


def test_stubborn_listener_is_killed_with_its_group(
    runner_dir: Path, spawned: list[RunnerProcess]
) -> None:
    process = start(runner_dir, spawned, FAKE_MODE="stubborn")
    order(runner_dir, "job long 60")
    next_events(process, Busy)
    worker = wait_for(process.worker, timeout=10)
    result = process.stop(now=True, timeout=2)
    assert result is not None and result.signal == signal.SIGKILL
    wait_for(lambda: not alive(worker), timeout=10)
    log = (runner_dir / "runner.log").read_text()
    assert "ignoring signal 2" in log and "ignoring signal 15" in log


def spawn_from_orphaned_parent(directory: Path) -> int:
    """Start the runner from a separate Python process, then SIGKILL that parent."""
    code = (
        "import sys; from pathlib import Path\n"
        "from runnerctl.runner.environment import Account\n"
        "from runnerctl.runner.process import RunnerProcess\n"
        "p = RunnerProcess.spawn('ci-1', Path(sys.argv[1]), {'PATH': '/usr/bin:/bin'},"
        " Account.lookup(None))\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    return pid


def test_adopt_after_parent_killed(runner_dir: Path) -> None:
    pid = spawn_from_orphaned_parent(runner_dir)
    try:
        assert alive(pid)
        with RunnerProcess.adopt("ci-1", runner_dir) as process:
            assert process is not None and process.pid == pid and process.adopted
            order(runner_dir, "job build 1")
            next_events(process, Busy)
            next_events(process, Idle)
            order(runner_dir, "exit 2")
            result = process.wait(20)
            assert result is not None and result.code is None and result.action == "unknown"
    finally:
        kill_group(pid)


def test_adopt_finds_a_busy_runner(runner_dir: Path) -> None:
    pid = spawn_from_orphaned_parent(runner_dir)
    try:
        order(runner_dir, "job deploy 60")
        wait_for(lambda: "Running job: deploy" in (runner_dir / "runner.log").read_text(), 20)
        wait_for(lambda: procfs.children(pid), timeout=20)
        with RunnerProcess.adopt("ci-1", runner_dir) as process:
            assert process is not None and process.busy and process.job == "deploy"
            assert process.stop(now=False, timeout=0.3) is None
    finally:
        kill_group(pid)


def test_adopt_without_pid_file_searches_proc(runner_dir: Path) -> None:
    pid = spawn_from_orphaned_parent(runner_dir)
    try:
        (runner_dir / "runner.pid").unlink()
        with RunnerProcess.adopt("ci-1", runner_dir) as process:
            assert process is not None and process.pid == pid
        assert pidfile.read(runner_dir / "runner.pid") == pidfile.record(pid)
    finally:
        kill_group(pid)


def test_adopt_refuses_a_reused_pid(runner_dir: Path, tmp_path: Path) -> None:
    other = make_runner_dir(tmp_path, "ci-2")
    # A live process whose pid the file names, but with another start time: not ours.
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=other)
    try:
        started = procfs.start_time(impostor.pid)
        assert started is not None
        pidfile.write(runner_dir / "runner.pid", pidfile.PidRecord(impostor.pid, started + 1))
        assert RunnerProcess.adopt("ci-1", runner_dir) is None
        # The right start time but another folder: still not this slot's runner.
        pidfile.write(runner_dir / "runner.pid", pidfile.PidRecord(impostor.pid, started))
        assert RunnerProcess.adopt("ci-1", runner_dir) is None
    finally:
        impostor.kill()
        impostor.wait()


def test_adopt_nothing_when_nothing_runs(runner_dir: Path) -> None:
    assert RunnerProcess.adopt("ci-1", runner_dir) is None
