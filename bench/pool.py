"""runnerctl under the benchmark: a real manager, the loopback GitHub, stand-in runners.

The manager runs as an operator's service would (``runnerctl-manager run``, GitHub's
address and App credentials in its environment, debug logging to a file), with N
ephemeral slots in one repository. A feeder keeps about N jobs of 0.5 to 3 s queued,
so every runner takes one job and exits, and its worker starts the next one.

What each figure is made of:

- runner exit, next runner forked: kernel times (proc connector), as for the peers;
- the worker's reaction: its "state: <slot> ... -> installing" line (debug log,
  millisecond stamps), the first thing it does after seeing the exit;
- runner online: the loopback GitHub shows the slot's runner with a new session
  (polled every 25 ms from this process, which hosts the double);
- API time: the client's own "github: METHOD path -> status (seconds)" debug lines.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import measure
from bench.pool_logs import WALL_OFFSET, first_after, read_log
from bench.procevents import Proc, ProcEvents
from runnerctl.demo import is_api_call, manager_environment
from runnerctl.sandbox import Sandbox

REPO = "bench/app"
LABELS = ["self-hosted", "linux", "bench"]
JOB_SECONDS = (0.5, 3.0)


@dataclass
class PoolResult:
    slots: int
    mode: str
    cold_start: float | None = None
    cold_forked: float | None = None
    churn: int = 0
    respawn: dict[str, float] = field(default_factory=dict)
    reaction: dict[str, float] = field(default_factory=dict)
    supervision: dict[str, float] = field(default_factory=dict)
    online: dict[str, float] = field(default_factory=dict)
    api_time: dict[str, float] = field(default_factory=dict)
    api_seconds_per_respawn: float = 0.0
    kill: dict[str, float] = field(default_factory=dict)
    cpu_churn: float = 0.0
    cpu_idle: float = 0.0
    cpu_idle_runners: float = 0.0
    pss: float = 0.0
    uss_worker: dict[str, float] = field(default_factory=dict)
    respawns: int = 0
    rest_calls: int = 0
    calls_per_respawn: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def write_config(folder: Path, slots: int, mode: str, cache: Path) -> Path:
    text = f"""defaults:
  labels: [{", ".join(LABELS)}]
  daemonize: false
  base_dir: {folder / "runners"}
runners:
  - {{name_prefix: ci, count: {slots}, repo: {REPO}, ephemeral: true, registration: {mode}}}
manager:
  interval: 30
  cache_dir: {cache}
  state_dir: {folder / "state"}
  stop_timeout: 15
  janitor_interval: 3600
  update_check_interval: 3600
"""
    path = folder / "runnerctl.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class OnlineWatch:
    """Notes when each slot's next runner first has a session on the loopback GitHub."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.moments: dict[str, list[float]] = {}
        self.seen: set[Any] = set()  # runner ids seen with a session
        self.online: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.025):
            now = time.monotonic()
            online = set()
            for runner in self.sandbox.runners():
                name, session = runner.get("name", ""), runner.get("session")
                if session and runner.get("status") == "online":
                    online.add(name)
                if session and runner["id"] not in self.seen:
                    self.seen.add(runner["id"])  # each ephemeral runner is a new id
                    self.moments.setdefault(name, []).append(now)
            self.online = online

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Feeder:
    """Keeps about ``target`` jobs queued (0.5 to 3 s each) while on."""

    def __init__(self, sandbox: Sandbox, target: int) -> None:
        self.sandbox, self.target, self.on = sandbox, target, True
        self.random = random.Random(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.wait(0.25):
            if not self.on:
                continue
            queued = sum(job["status"] == "queued" for job in self.sandbox.jobs())
            for _ in range(max(0, self.target - queued)):
                duration = round(self.random.uniform(*JOB_SECONDS), 1)
                self.sandbox.enqueue_job(LABELS, duration=duration, scope=f"repo:{REPO}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Manager:
    """A ``runnerctl-manager run`` in its own session; everything in its folder is
    killed on stop (runners have sessions of their own)."""

    def __init__(self, config: Path, sandbox: Sandbox, folder: Path, events: ProcEvents) -> None:
        self.folder = folder
        self.log = folder / "manager.log"
        env = manager_environment(sandbox, os.environ)
        command = [sys.executable, "-m", "runnerctl.manager", "run", "--config", str(config)]
        command += ["--log-level", "debug"]
        self.started = time.monotonic()
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        events.follow(self.pid)
        self.events = events

    def supervisors(self) -> list[int]:
        """The root and its live children (workers, janitor): no runner."""
        return [self.pid] + [c.pid for c in self.events.children(self.pid) if c.exited is None]

    def runners(self) -> list[int]:
        """The live listeners (for comparison: their CPU is never the supervisor's)."""
        return [r.pid for w in self.workers() for r in runners_of(self, w) if r.exited is None]

    def workers(self) -> list[Proc]:
        return [c for c in self.events.children(self.pid) if c.exited is None]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)  # stop now: runners are cut short
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        for _ in range(5):
            leftovers = processes_inside(self.folder)
            if not leftovers:
                break
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


def processes_inside(folder: Path) -> list[int]:
    """Pids (not ours) whose working directory is inside ``folder``."""
    inside, found = str(folder.resolve()), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                cwd = os.readlink(f"/proc/{entry}/cwd")
                if cwd == inside or cwd.startswith(inside + "/"):
                    found.append(int(entry))
    return found


def is_runner(proc: Proc) -> bool:
    return "Runner.Listener" in proc.cmdline


def runners_of(manager: Manager, worker: Proc) -> list[Proc]:
    """The listeners one worker started, in order."""
    return [c for c in manager.events.children(worker.pid) if is_runner(c)]


def wait_online(watch: OnlineWatch, slots: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(watch.online) >= slots:
            return time.monotonic()
        time.sleep(0.02)
    return None


def churn_figures(
    result: PoolResult, manager: Manager, watch: OnlineWatch, since: float, until: float
) -> None:
    """Respawn, supervision and online latencies for runner exits in [since, until)."""
    reactions, api = read_log(manager.log)
    respawn, reaction, supervision, online = [], [], [], []
    for worker in manager.events.children(manager.pid):
        runners = runners_of(manager, worker)
        respawn += measure.respawn_gaps(runners, since, until, is_runner)
        for runner, following in itertools.pairwise(runners):
            if runner.exited is None or not since <= runner.exited < until:
                continue
            slot = os.path.basename(runner.cwd)
            moves = reactions.get(slot, [])
            acted = first_after([w for w, _ in moves], runner.exited, slack=0.001)
            if acted is not None:
                reaction.append(max(0.0, acted - runner.exited))
            begun = [w for w, state in moves if state != "installing"]
            started = first_after(begun, runner.exited, slack=0.001)
            if started is not None:
                supervision.append(max(0.0, started - runner.exited))
            seen = first_after(watch.moments.get(slot, []), following.forked)
            if seen is not None:
                online.append(seen - runner.exited)
    result.respawns = len(respawn)
    result.respawn = measure.percentiles(respawn)
    result.reaction = measure.percentiles(reaction)
    result.supervision = measure.percentiles(supervision)
    result.online = measure.percentiles(online)
    durations = [seconds for when, seconds in api if since <= when < until]
    result.api_time = measure.percentiles(durations)
    result.api_seconds_per_respawn = round(sum(durations) / max(1, len(respawn)), 4)


def kill_workers(manager: Manager, count: int) -> dict[str, float]:
    """SIGKILL ``count`` workers one by one: kill -> the root's fork of the replacement."""
    gaps = []
    for _ in range(count):
        victims = [w for w in manager.workers() if "worker" in _title(w.pid)]
        if not victims:
            break
        victim = random.choice(victims)
        before = len(manager.events.children(manager.pid))
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and victim.exited is None:
            time.sleep(0.005)
        while time.monotonic() < deadline:
            born = manager.events.children(manager.pid)[before:]
            if born and victim.exited is not None:
                gaps.append(born[0].forked - victim.exited)
                break
            time.sleep(0.005)
        time.sleep(0.3)
    return measure.percentiles(gaps)


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def run_pool(
    slots: int,
    mode: str,
    folder: Path,
    cache: Path,
    events: ProcEvents,
    warmup: float,
    window: float,
    idle: float,
    kills: int,
    churn: int,
) -> PoolResult:
    """One pool from cold start to stop; every figure of runnerctl for ``slots``.

    ``churn``: jobs queued at once. Each stand-in runner is a Python process that
    costs a few tenths of a CPU-second to start, so all N slots churning would measure
    the machine's CPU, not the supervisor; the rest of the slots sit idle, online.
    """
    result = PoolResult(slots, mode, churn=min(churn, slots))
    folder.mkdir(parents=True)
    with Sandbox(repos=[REPO], root=folder / "github") as sandbox:
        # Slow starts on a loaded machine must not make runners look offline.
        sandbox.configure(offline_after=max(5.0, slots / 10))
        watch = OnlineWatch(sandbox)
        manager = Manager(write_config(folder, slots, mode, cache), sandbox, folder, events)
        feeder: Feeder | None = None
        try:
            up = wait_online(watch, slots, timeout=60 + slots)
            if up is None:
                raise RuntimeError(f"runnerctl: {slots} runners not online; see {manager.log}")
            result.cold_start = round((up - manager.started) * 1000, 1)
            firsts = [runners_of(manager, w)[:1] for w in manager.events.children(manager.pid)]
            forked = sorted(r[0].forked for r in firsts if r)
            if len(forked) >= slots:
                result.cold_forked = round((forked[slots - 1] - manager.started) * 1000, 1)
            feeder = Feeder(sandbox, result.churn)
            time.sleep(warmup)
            since = time.monotonic()
            result.cpu_churn = measure.cpu_per_minute(manager.supervisors, window)
            until = time.monotonic()
            calls = [
                c
                for c in sandbox.calls()
                if is_api_call(c) and since <= c["time"] - WALL_OFFSET < until
            ]
            memory = [measure.memory(w.pid) for w in manager.workers()]
            result.pss = measure.tree_memory(manager.supervisors())["pss"]
            result.uss_worker = {
                "median": round(sorted(m.get("uss", 0.0) for m in memory)[len(memory) // 2], 2),
                "max": round(max(m.get("uss", 0.0) for m in memory), 2),
            }
            feeder.on = False
            time.sleep(4.0)  # the last jobs of the window end; their runners are replaced
            churn_figures(result, manager, watch, since, until)
            result.rest_calls = len(calls)
            result.calls_per_respawn = round(len(calls) / max(1, result.respawns), 4)
            if idle > 0:
                wait_quiet(sandbox, timeout=30)
                both = measure.cpu_per_minutes([manager.supervisors, manager.runners], idle)
                result.cpu_idle, result.cpu_idle_runners = both
            if kills > 0:
                result.kill = kill_workers(manager, kills)
        finally:
            if feeder is not None:
                feeder.stop()
            watch.stop()
            manager.stop()
    return result


def wait_quiet(sandbox: Sandbox, timeout: float) -> None:
    """Until no job is queued or running (every runner idle, waiting for work)."""
    for job in sandbox.jobs():
        if job["status"] == "queued":
            sandbox.cancel_job(job["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(job["status"] in ("queued", "running") for job in sandbox.jobs()):
            return
        time.sleep(0.2)
