"""Kernel process events (fork, exec, exit) with the kernel's own timestamps.

The Linux proc connector (a netlink socket, needs CAP_NET_ADMIN) reports every fork,
exec and exit on the machine as it happens, stamped with CLOCK_MONOTONIC in
nanoseconds by the kernel. The benchmark follows only the processes below the
supervisors it starts, so "child exited" and "next child forked" are both kernel
times, measured the same way for every supervisor, with no polling error and no
cooperation from the child.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
FORK, EXEC, EXIT = 0x1, 0x2, 0x80000000
#: netlink header (16 bytes) + connector header (20 bytes) precede the event.
EVENT_AT = 36


@dataclass
class Proc:
    """One process below a followed root: when it was forked, exec'd and exited."""

    pid: int
    parent: int
    forked: float  # seconds, CLOCK_MONOTONIC
    cmdline: str = ""
    cwd: str = ""
    execed: float | None = None
    exited: float | None = None
    children: list[Proc] = field(default_factory=list)


class ProcEvents:
    """Follows fork/exec/exit below chosen root pids on a background thread."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.roots: set[int] = set()
        self.lock = threading.Lock()
        self.lost = 0  # events the socket dropped (ENOBUFS) while the machine was busy
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind((os.getpid(), CN_IDX_PROC))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="proc-events", daemon=True)

    def __enter__(self) -> ProcEvents:
        self._control(PROC_CN_MCAST_LISTEN)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._control(PROC_CN_MCAST_IGNORE)
        self._sock.close()

    def follow(self, pid: int) -> None:
        """Follow ``pid`` and everything it forks from now on."""
        with self.lock:
            self.roots.add(pid)
            # Replace any earlier process of the same pid: pids are reused (pid_max is
            # 32768 here), and a stale, exited entry would hide the new one's forks.
            self.procs[pid] = Proc(pid, 0, time.monotonic())

    def children(self, pid: int) -> list[Proc]:
        """The processes ``pid`` forked, in fork order."""
        with self.lock:
            proc = self.procs.get(pid)
            return list(proc.children) if proc else []

    def snapshot(self) -> list[Proc]:
        with self.lock:
            return list(self.procs.values())

    def _control(self, op: int) -> None:
        payload = struct.pack("I", op)
        connector = struct.pack("IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0)
        body = connector + payload
        header = struct.pack("IHHII", 16 + len(body), 3, 0, 0, os.getpid())  # NLMSG_DONE
        self._sock.send(header + body)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:
                # ENOBUFS: the machine made events faster than we read them; the
                # benchmark reports how often (a fork missed loses one sample).
                self.lost += 1
                if error.errno != errno.ENOBUFS:
                    time.sleep(0.01)
                continue
            try:
                self._handle(data)
            except struct.error:
                self.lost += 1

    def _handle(self, data: bytes) -> None:
        if len(data) < EVENT_AT + 16:
            return
        what, _cpu, stamp = struct.unpack_from("IIQ", data, EVENT_AT)
        moment = stamp / 1e9
        if what == FORK:
            _ppid, parent, pid, tgid = struct.unpack_from("iiii", data, EVENT_AT + 16)
            if pid != tgid:
                return  # a thread, not a process
            with self.lock:
                mother = self.procs.get(parent)
                if mother is not None and mother.exited is None:
                    # Kept by object, not pid: a reused pid must not join another family.
                    child = self.procs[pid] = Proc(pid, parent, moment)
                    mother.children.append(child)
        elif what == EXEC:
            pid, _tgid = struct.unpack_from("ii", data, EVENT_AT + 16)
            with self.lock:
                proc = self.procs.get(pid)
            if proc is not None and proc.exited is None:  # not a stale entry of a reused pid
                proc.execed = moment
                proc.cmdline, proc.cwd = _describe(pid)
        elif what == EXIT:
            pid, tgid = struct.unpack_from("ii", data, EVENT_AT + 16)
            if pid != tgid:
                return
            with self.lock:
                proc = self.procs.get(pid)
                if proc is not None and proc.exited is None:
                    proc.exited = moment


def _describe(pid: int) -> tuple[str, str]:
    """The command line and working directory of a process that just exec'd."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return "", ""
    return cmdline, cwd


def available() -> str:
    """'' when the proc connector can be used here, else why not."""
    try:
        with ProcEvents():
            return ""
    except OSError as error:
        return f"the proc connector is unavailable ({error.strerror}); run as root"
