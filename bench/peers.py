"""The peers and the floor: supervisord, circus and a fork-and-wait loop, each keeping
N copies of the same short-lived shell child alive.

Each runs in a session of its own under the benchmark's folder and is followed by the
proc connector, so its respawn latency is the kernel's exit of a child to the
kernel's fork of the next child in the same slot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import measure
from bench.procevents import Proc, ProcEvents

#: The child: lives 0.5 to 3 s (a tenth of a second steps); ``; true`` keeps bash from
#: exec'ing sleep, so the child keeps its slot name on its command line.
CHURN = "d=$((5 + RANDOM % 26)); sleep $((d / 10)).$((d % 10)); true"
IDLE = "sleep 3600; true"
BASH = "/bin/bash"
KINDS = ("floor", "supervisord", "circus")


@dataclass
class PeerResult:
    kind: str
    slots: int
    respawn: dict[str, float] = field(default_factory=dict)
    cpu_churn: float = 0.0
    cpu_idle: float = 0.0
    pss: float = 0.0
    cold_start: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def supervisord_config(folder: Path, slots: int, script: str) -> Path:
    """One program of ``slots`` processes; control over a unix socket only."""
    escaped = script.replace("%", "%%")  # supervisord expands %(name)s in commands
    command = f"{BASH} -c '{escaped}' slot-%(process_num)d"
    text = f"""
[unix_http_server]
file = {folder}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {folder}/supervisord.log
pidfile = {folder}/supervisord.pid
childlogdir = {folder}
loglevel = warn

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{folder}/supervisor.sock

[program:child]
command = {command}
process_name = %(program_name)s-%(process_num)d
numprocs = {slots}
autorestart = true
startsecs = 0
startretries = 1000
stdout_logfile = NONE
stderr_logfile = NONE
"""
    path = folder / "supervisord.conf"
    path.write_text(text, encoding="utf-8")
    return path


def circus_config(folder: Path, slots: int, script: str) -> Path:
    """One watcher of ``slots`` processes; ipc endpoints, no multicast, no statsd."""
    text = f"""
[circus]
check_delay = 5
endpoint = ipc://{folder}/circus-control.sock
pubsub_endpoint = ipc://{folder}/circus-pubsub.sock
stats_endpoint = ipc://{folder}/circus-stats.sock
statsd = False
httpd = False
multicast_endpoint =
loglevel = WARNING
logoutput = {folder}/circusd.log

[watcher:child]
cmd = {BASH}
args = -c "{script}" slot-$(circus.wid)
numprocesses = {slots}
respawn = True
copy_env = True
"""
    path = folder / "circus.ini"
    path.write_text(text, encoding="utf-8")
    return path


def command_for(kind: str, folder: Path, slots: int, script: str, seconds: float) -> list[str]:
    bindir = Path(sys.executable).parent
    if kind == "floor":
        floor = Path(__file__).with_name("floor.py")
        return [sys.executable, str(floor), str(slots), str(seconds), BASH, "-c", script, "slot"]
    if kind == "supervisord":
        conf = supervisord_config(folder, slots, script)
        return [str(bindir / "supervisord"), "-c", str(conf)]
    if kind == "circus":
        return [str(bindir / "circusd"), str(circus_config(folder, slots, script))]
    raise ValueError(kind)


def slot_of(proc: Proc) -> str:
    return proc.cmdline.rsplit(" ", 1)[-1] if proc.cmdline.startswith(BASH) else ""


def is_shell_child(proc: Proc) -> bool:
    return proc.cmdline.startswith(BASH)


class Supervised:
    """One supervisor process in its own session, stopped (the whole group) on exit."""

    def __init__(self, command: list[str], folder: Path, events: ProcEvents) -> None:
        self.started = time.monotonic()
        with (folder / "output.log").open("ab") as out:
            self.popen = subprocess.Popen(
                command,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        events.follow(self.popen.pid)
        self.pid = self.popen.pid

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def wait_children(events: ProcEvents, pid: int, count: int, timeout: float) -> float | None:
    """When the ``count``-th shell child of ``pid`` was forked; None past ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shells = [c for c in events.children(pid) if c.execed is not None]
        if len(shells) >= count:
            return sorted(c.forked for c in shells)[count - 1]
        time.sleep(0.01)
    return None


def run_peer(
    kind: str,
    slots: int,
    folder: Path,
    events: ProcEvents,
    warmup: float,
    window: float,
    idle: float,
) -> PeerResult:
    """Churn (respawn latency, CPU, PSS, cold start), then idle (CPU) for ``kind``."""
    result = PeerResult(kind, slots)
    churn_dir = folder / f"{kind}-{slots}-churn"
    churn_dir.mkdir(parents=True)
    total = warmup + window + 30
    sup = Supervised(command_for(kind, churn_dir, slots, CHURN, total), churn_dir, events)
    try:
        last = wait_children(events, sup.pid, slots, timeout=60)
        if last is None:
            raise RuntimeError(f"{kind}: {slots} children did not start within 60 s")
        result.cold_start = round((last - sup.started) * 1000, 1)
        time.sleep(warmup)
        since = time.monotonic()
        result.cpu_churn = measure.cpu_per_minute(lambda: [sup.pid], window)
        until = time.monotonic()
        result.pss = measure.tree_memory([sup.pid])["pss"]
        result.extra["udp_sockets"] = udp_sockets(sup.pid)
        time.sleep(3.5)  # let the last exits of the window be followed by their forks
        gaps = gaps_by_slot(events.children(sup.pid), since, until)
        result.respawn = measure.percentiles(gaps)
    finally:
        sup.stop()
    if idle > 0:
        idle_dir = folder / f"{kind}-{slots}-idle"
        idle_dir.mkdir(parents=True)
        sup = Supervised(command_for(kind, idle_dir, slots, IDLE, idle + 60), idle_dir, events)
        try:
            wait_children(events, sup.pid, slots, timeout=60)
            time.sleep(2.0)
            result.cpu_idle = measure.cpu_per_minute(lambda: [sup.pid], idle)
        finally:
            sup.stop()
    return result


def gaps_by_slot(children: list[Proc], since: float, until: float) -> list[float]:
    slots: dict[str, list[Proc]] = {}
    for child in children:
        if is_shell_child(child):
            slots.setdefault(slot_of(child), []).append(child)
    gaps: list[float] = []
    for procs in slots.values():
        gaps += measure.respawn_gaps(procs, since, until, is_shell_child)
    return gaps


def udp_sockets(pid: int) -> int:
    """How many UDP sockets ``pid`` holds (circus's multicast discovery would be one)."""
    inodes = set()
    for name in ("udp", "udp6"):
        with contextlib.suppress(OSError), open(f"/proc/net/{name}", encoding="ascii") as table:
            inodes |= {line.split()[9] for line in list(table)[1:]}
    held = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
    return held
