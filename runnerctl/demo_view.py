"""The demo's live view: a status table redrawn in place, or plain periodic lines.

On a terminal the table is rewritten a few times a second by moving the cursor back
over the previous drawing; anything else (a pipe, a CI log) gets one plain line every
few seconds, so a log file stays readable and short.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

#: Job statuses the loopback GitHub reports, in the order the table shows them.
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "lost")
#: Seconds between plain lines when the output is not a terminal.
PLAIN_EVERY = 2.0

HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
CLEAR_LINE = "\x1b[K"
CLEAR_BELOW = "\x1b[J"


@dataclass(frozen=True)
class SlotRow:
    """One runner slot as the manager's status.json shows it."""

    name: str
    kind: str  # "jit" or "token", from the demo's own config
    state: str
    runner_pid: int | None
    jobs_done: int
    restarts: int


@dataclass(frozen=True)
class Snapshot:
    """Everything one drawing shows."""

    elapsed: float
    phase: str  # the manager root's phase, or what the demo is doing
    slots: tuple[SlotRow, ...]
    jobs: Mapping[str, int] = field(default_factory=dict)
    api_calls: int = 0
    note: str = ""  # a last line, such as how to stop the demo

    def job_count(self, status: str) -> int:
        return int(self.jobs.get(status, 0))


def count_jobs(jobs: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the loopback GitHub's jobs are in each status."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    for job in jobs:
        status = str(job.get("status", ""))
        counts[status] = counts.get(status, 0) + 1
    return counts


def slot_rows(
    document: Mapping[str, Any],
    kinds: Mapping[str, str],
    previous: Mapping[str, SlotRow] | None = None,
) -> tuple[SlotRow, ...]:
    """The rows of a status.json document, in the pool's order. A slot missing from it
    is ``starting`` before the manager's first report; after it, the slot's worker is
    gone, so it is ``stopped`` with the jobs it had done (from ``previous``)."""
    reported = {str(slot.get("name")): slot for slot in document.get("slots", [])}
    rows = []
    for name, kind in kinds.items():
        slot = reported.get(name)
        if slot is None:
            before = (previous or {}).get(name)
            state = "stopped" if document else "starting"
            jobs, restarts = (before.jobs_done, before.restarts) if before else (0, 0)
            rows.append(SlotRow(name, kind, state, None, jobs, restarts))
            continue
        pid = slot.get("runner_pid")
        rows.append(
            SlotRow(
                name=name,
                kind=kind,
                state=str(slot.get("state", "-")),
                runner_pid=pid if isinstance(pid, int) else None,
                jobs_done=int(slot.get("jobs_done") or 0),
                restarts=int(slot.get("restarts") or 0),
            )
        )
    return tuple(rows)


def render_table(snapshot: Snapshot) -> list[str]:
    """The full table: a heading, one row per slot, then the totals."""
    header = ("SLOT", "REGISTRATION", "STATE", "RUNNER PID", "JOBS DONE", "RESTARTS")
    rows = [header]
    for slot in snapshot.slots:
        pid = str(slot.runner_pid) if slot.runner_pid else "-"
        rows.append(
            (slot.name, slot.kind, slot.state, pid, str(slot.jobs_done), str(slot.restarts))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"runnerctl demo: {_clock(snapshot.elapsed)}, manager {snapshot.phase}",
        "",
    ]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  " + "  ".join(cells).rstrip())
    lines += ["", "  " + _totals(snapshot)]
    if snapshot.note:
        lines += ["", "  " + snapshot.note]
    return lines


def plain_line(snapshot: Snapshot) -> str:
    """One line for a log: totals, then each slot as ``name state (pid P, N jobs)``."""
    slots = ", ".join(
        f"{slot.name} {slot.state} (pid {slot.runner_pid or '-'}, {slot.jobs_done} jobs)"
        for slot in snapshot.slots
    )
    return f"demo: {_clock(snapshot.elapsed)} {snapshot.phase}; {_totals(snapshot)}; {slots}"


def _totals(snapshot: Snapshot) -> str:
    jobs = ", ".join(
        f"{snapshot.job_count(status)} {status}"
        for status in JOB_STATUSES
        if status in ("queued", "running", "succeeded") or snapshot.job_count(status)
    )
    return f"jobs: {jobs}; API calls: {snapshot.api_calls}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, int(seconds)), 60)
    return f"{minutes}:{secs:02d}"


class LiveView:
    """Shows snapshots on ``out``: redrawn in place on a terminal, else plain lines."""

    def __init__(self, out: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.gone = False  # the reader went away (``demo | head``): nothing more to show
        self.live = out.isatty() if live is None else live
        self._drawn = 0  # lines of the previous drawing, to move back over
        self._last_plain = float("-inf")

    def show(self, snapshot: Snapshot, force: bool = False) -> None:
        """Draw ``snapshot``; plain output skips it unless a line is due or ``force``."""
        if self.live:
            self._redraw(render_table(snapshot))
            return
        now = time.monotonic()
        if force or now - self._last_plain >= PLAIN_EVERY:
            self._last_plain = now
            self.say(plain_line(snapshot))

    def say(self, line: str) -> None:
        """A message line; on a terminal it goes above the table, which is drawn anew."""
        if self.live:
            self._erase()
        self._write(line + "\n")

    def close(self) -> None:
        """Leave the last table on screen and give the cursor back."""
        if self.live and self._drawn:
            self._write(SHOW_CURSOR)
        self._drawn = 0

    def _redraw(self, lines: list[str]) -> None:
        # Lines cut to the terminal's width: a wrapped line would break the cursor moves.
        width = max(20, shutil.get_terminal_size().columns - 1)
        parts = [HIDE_CURSOR, self._back()]
        parts += [line[:width] + CLEAR_LINE + "\n" for line in lines]
        parts.append(CLEAR_BELOW)
        self._write("".join(parts))
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self._drawn:
            self._write(self._back() + CLEAR_BELOW + SHOW_CURSOR)
            self._drawn = 0

    def _back(self) -> str:
        """Cursor to the first column of the previous drawing's first line."""
        return f"\x1b[{self._drawn}F" if self._drawn else "\r"

    def _write(self, text: str) -> None:
        if self.gone:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self.gone = True
            # Point the descriptor at /dev/null so the interpreter's last flush is quiet.
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.out.fileno())
                os.close(devnull)
