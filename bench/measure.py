"""What the benchmark reads from the machine: CPU, memory, and latency statistics."""

from __future__ import annotations

import itertools
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.procevents import Proc

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max and the count, in milliseconds (input in seconds)."""
    data = sorted(v * 1000.0 for v in values)
    if not data:
        return {"n": 0}

    def rank(q: float) -> float:
        return data[min(len(data) - 1, max(0, round(q * len(data) + 0.5) - 1))]

    return {
        "n": len(data),
        "p50": round(rank(0.50), 2),
        "p95": round(rank(0.95), 2),
        "p99": round(rank(0.99), 2),
        "max": round(data[-1], 2),
    }


def respawn_gaps(
    children: list[Proc], since: float, until: float, is_child: Callable[[Proc], bool]
) -> list[float]:
    """Per slot: a child's exit -> the next child's fork, for exits in [since, until).

    ``children`` are one parent's forks of one slot (or a parent that owns one slot,
    as a runnerctl worker does), in fork order; ``is_child`` keeps the supervised
    program and drops helpers (a runnerctl worker also forks config.sh, say).
    """
    kept = [c for c in children if is_child(c)]
    gaps = []
    for previous, following in itertools.pairwise(kept):
        if previous.exited is None or not since <= previous.exited < until:
            continue
        if following.forked >= previous.exited:
            gaps.append(following.forked - previous.exited)
    return gaps


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of ``pids`` (own CPU only: reaped children are not added)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def cpu_per_minute(pids: Callable[[], list[int]], seconds: float) -> float:
    """CPU-seconds a minute that ``pids()`` use over a window of ``seconds``."""
    before = {pid: cpu_seconds([pid]) for pid in pids()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    used = sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in pids())
    return round(used * 60.0 / elapsed, 4)


def cpu_per_minutes(groups: list[Callable[[], list[int]]], seconds: float) -> list[float]:
    """``cpu_per_minute`` for several groups of pids over the same window."""
    before = [{pid: cpu_seconds([pid]) for pid in pids()} for pids in groups]
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    used = [
        sum(cpu_seconds([pid]) - seen.get(pid, 0.0) for pid in pids())
        for pids, seen in zip(groups, before, strict=True)
    ]
    return [round(u * 60.0 / elapsed, 4) for u in used]


def memory(pid: int) -> dict[str, float]:
    """PSS and USS (private clean + dirty) of ``pid`` in MiB, from smaps_rollup."""
    values: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    values[parts[0][:-1]] = int(parts[1]) / 1024.0
    except OSError:
        return {}
    private = values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0)
    return {"pss": values.get("Pss", 0.0), "uss": private}


def tree_memory(pids: Iterable[int]) -> dict[str, float]:
    """Summed PSS and USS of ``pids`` in MiB."""
    seen = [memory(pid) for pid in pids]
    return {
        "pss": round(sum(m.get("pss", 0.0) for m in seen), 2),
        "uss": round(sum(m.get("uss", 0.0) for m in seen), 2),
    }


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory_gib: float
    kernel: str
    python: str

    @classmethod
    def here(cls) -> Machine:
        model, mem_kib = "unknown", 0
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        return cls(
            cpus=os.cpu_count() or 1,
            cpu_model=model,
            memory_gib=round(mem_kib / 1024 / 1024, 1),
            kernel=platform.release(),
            python=platform.python_version(),
        )
