"""A running listener as two file descriptors: a pidfd and an inotify watch.

``RunnerProcess`` is what a worker waits on. ``fileno()`` is a pidfd, readable once the
listener has exited; ``events_fileno()`` is readable once ``runner.log`` grew. Both go
into ``multiprocessing.connection.wait`` beside the worker's control pipe, so a worker
sleeps in the kernel until something happens: no thread, no polling loop.

Why a pidfd and not the pid: a pidfd names one process for as long as it is held, so
neither a reused pid nor a runner that is not our child (adopted after a worker
restart) needs special handling to be waited on. Only the exit code differs: the
kernel hands it to the parent alone, so an adopted runner's code is unknown.

Stopping comes in two kinds. ``now`` sends SIGINT to the listener (its graceful
shutdown: the running job is cancelled, the session closed), then SIGTERM, then
SIGKILL to the whole process group, each step bounded. A drain never signals while a
job runs: it waits for the job to end (the listener's "completed" line, or the
``Runner.Worker`` process exiting) and only then stops the listener. After exit codes
3 and 4 the group is left alone, because the runner's ``_update.sh`` still works in it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from pathlib import Path

from runnerctl import procfs
from runnerctl.runner import pidfile
from runnerctl.runner.environment import Account
from runnerctl.runner.exits import UPDATE_CODES, Exit, explain
from runnerctl.runner.logfile import LOG_NAME, open_for_child
from runnerctl.runner.observe import LISTENER_PROGRAM, Event, LogObserver, worker_of

log = logging.getLogger(__name__)

#: Shares of a stop's time budget for SIGINT and SIGTERM; SIGKILL gets what is left.
_INTERRUPT_SHARE = 0.6
_TERMINATE_SHARE = 0.3
#: No signal step waits less than this, however small the budget, nor SIGKILL longer.
_MIN_STEP = 1.0
_KILL_WAIT = 5.0


class RunnerProcess:
    """One listener, started by us or adopted; see the module docstring."""

    def __init__(
        self,
        name: str,
        directory: Path,
        entry: pidfile.PidRecord,
        pidfd: int,
        observer: LogObserver,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.pid = entry.pid
        self.record = entry
        self.adopted = popen is None
        self._pidfd = pidfd
        self._observer = observer
        self._popen = popen
        self._queued: list[Event] = []
        self._exit: Exit | None = None

    # -- starting and finding ---------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        name: str,
        directory: Path,
        env: dict[str, str],
        account: Account | None = None,
    ) -> RunnerProcess:
        """Start ``bin/Runner.Listener run`` in ``directory`` in a session of its own.

        ``account`` runs it as another user (the caller must be root). stdout and
        stderr append to ``runner.log``; ``runner.pid`` is written before returning.
        """
        directory = directory.absolute()  # the program path must not depend on cwd
        log_path = directory / LOG_NAME
        owner = (account.uid, account.gid) if account else None
        log_fd = open_for_child(log_path, owner)
        offset = os.fstat(log_fd).st_size
        switch = account if account is not None and account.uid != os.geteuid() else None
        try:
            popen = subprocess.Popen(
                [str(directory / "bin" / LISTENER_PROGRAM), "run"],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                user=switch.uid if switch else None,
                group=switch.gid if switch else None,
                extra_groups=list(switch.groups) if switch else None,
            )
        finally:
            os.close(log_fd)
        pidfd = -1
        try:
            # Our unreaped child cannot vanish, so its pid is safe to open and record.
            pidfd = os.pidfd_open(popen.pid)
            entry = pidfile.record(popen.pid) or pidfile.PidRecord(popen.pid, 0)
            pidfile.write(directory / pidfile.PIDFILE_NAME, entry, owner)
            observer = LogObserver(log_path, popen.pid, offset)
        except BaseException:
            # A listener nobody can find or wait on must not run on: end it at once.
            _kill_group(popen.pid)
            popen.wait()
            if pidfd >= 0:
                os.close(pidfd)
            raise
        log.info("started: %s (pid %s)", name, popen.pid)
        return cls(name, directory, entry, pidfd, observer, popen)

    @classmethod
    def adopt(cls, name: str, directory: Path) -> RunnerProcess | None:
        """The live listener of ``directory``, or None when there is none.

        ``runner.pid`` is trusted only when its pid is alive with the recorded start
        time and works in ``directory``. Without a usable pid file (a worker killed
        between start and write, say) a listener working in ``directory`` is searched
        for in /proc, so a slot never ends up with two listeners.
        """
        directory = directory.resolve()
        found = _find(directory)
        if found is None:
            return None
        entry, pidfd = found
        path = directory / pidfile.PIDFILE_NAME
        if pidfile.read(path) != entry:
            pidfile.write(path, entry)
        try:
            observer = LogObserver(directory / LOG_NAME, entry.pid)
        except OSError:
            os.close(pidfd)
            raise
        log.info("adopted: %s (pid %s)", name, entry.pid)
        return cls(name, directory, entry, pidfd, observer)

    # -- what the worker waits on ------------------------------------------------------

    def fileno(self) -> int:
        """A pidfd: readable once the listener has exited."""
        return self._pidfd

    def events_fileno(self) -> int:
        """Readable once ``runner.log`` grew; then call ``read_events``."""
        return self._observer.fileno()

    def read_events(self) -> list[Event]:
        """The busy/idle/online events since the last call (empty when none)."""
        self._pump()
        events, self._queued = self._queued, []
        return events

    @property
    def busy(self) -> bool:
        """True while a job runs, as far as the listener's lines tell."""
        self._pump()
        return self._observer.busy and self._exit is None

    @property
    def online(self) -> bool:
        """True once the listener said it listens for jobs."""
        self._pump()
        return self._observer.online

    @property
    def job(self) -> str | None:
        """The name of the running job, or None."""
        return self._observer.job if self.busy else None

    def worker(self) -> int | None:
        """The pid of the ``Runner.Worker`` running a job under the listener, from /proc."""
        return None if self.exit() is not None else worker_of(self.pid)

    def exit(self) -> Exit | None:
        """How the listener ended, or None while it runs. Does not block."""
        if self._exit is None and _readable(self._pidfd, 0):
            self._exit = self._collect()
        return self._exit

    def wait(self, timeout: float | None = None) -> Exit | None:
        """Block until the listener exits (or ``timeout`` passes); its ``Exit``."""
        if self.exit() is None:
            _readable(self._pidfd, timeout)
        return self.exit()

    # -- stopping ---------------------------------------------------------------------

    def stop(self, now: bool, timeout: float) -> Exit | None:
        """Stop the listener; None when a drain ran out of time (the job still runs).

        ``now``: SIGINT, then SIGTERM, then SIGKILL to the group, within ``timeout``
        seconds (plus a few for SIGKILL to land). A drain first waits up to ``timeout``
        for the current job to end and never signals while one runs.
        """
        deadline = time.monotonic() + timeout
        if not now and not self._drained(deadline):
            log.info("drain timed out: %s (pid %s, job %r)", self.name, self.pid, self.job)
            return None
        return self._interrupt(deadline)

    def close(self) -> None:
        """Release both descriptors. The listener itself is not touched."""
        self._observer.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def __enter__(self) -> RunnerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "adopted" if self.adopted else "child"
        return f"<RunnerProcess {self.name} pid={self.pid} {kind}>"

    # -- internals --------------------------------------------------------------------

    def _pump(self) -> None:
        self._queued.extend(self._observer.read_events())

    def _collect(self) -> Exit:
        """The exit, once the pidfd said so: reap our child; clear the pid file."""
        self._pump()
        returncode = self._popen.wait() if self._popen is not None else _waitid(self._pidfd)
        result = explain(returncode, deprecated=self._observer.deprecated)
        pidfile.remove(self.directory / pidfile.PIDFILE_NAME, self.record)
        log.info("exited: %s (pid %s, %s)", self.name, self.pid, result)
        return result

    def _drained(self, deadline: float) -> bool:
        """Wait for the job to end; False when ``deadline`` came first."""
        while True:
            self._pump()
            if self.exit() is not None:
                return True
            worker = worker_of(self.pid)
            if not self._observer.busy and worker is None:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # The log may lag behind the worker (or the other way round): wake on
            # either, and on the worker's own exit.
            self._wait_any(worker, remaining)

    def _wait_any(self, worker: int | None, timeout: float) -> None:
        watched = [self._pidfd, self._observer.fileno()]
        worker_fd = None
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                worker_fd = os.pidfd_open(worker)
                watched.append(worker_fd)
        try:
            select.select(watched, [], [], timeout)
        finally:
            if worker_fd is not None:
                os.close(worker_fd)

    def _interrupt(self, deadline: float) -> Exit | None:
        budget = max(0.0, deadline - time.monotonic())
        steps = (
            (signal.SIGINT, max(_MIN_STEP, budget * _INTERRUPT_SHARE)),
            (signal.SIGTERM, max(_MIN_STEP, budget * _TERMINATE_SHARE)),
        )
        for signum, wait in steps:
            if self.exit() is not None:
                break
            log.info("stopping: %s (pid %s, %s)", self.name, self.pid, signum.name)
            _send(self._pidfd, signum)
            _readable(self._pidfd, wait)
        if not _readable(self._pidfd, 0):
            log.warning("killing: %s (pid %s, group)", self.name, self.pid)
            _kill_group(self.pid)
            _readable(self._pidfd, _KILL_WAIT)
        elif self._peek_code() not in UPDATE_CODES:
            # Sweep what the job left in the group while the listener's pid still holds
            # the group id (our unreaped child; an adopted one's group outlives it).
            _kill_group(self.pid)
        return self.exit()

    def _peek_code(self) -> int | None:
        """The exit code without reaping (so the group id stays ours); None if unknown."""
        if self._exit is not None:
            return self._exit.code
        if self._popen is None:
            return None
        try:
            result = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if result is None or result.si_code != os.CLD_EXITED:
            return None
        return result.si_status


def running_listener(directory: Path) -> pidfile.PidRecord | None:
    """The live listener of ``directory`` (as ``adopt`` would find it), not opened."""
    found = _find(directory.resolve())
    if found is None:
        return None
    os.close(found[1])
    return found[0]


def _find(directory: Path) -> tuple[pidfile.PidRecord, int] | None:
    """The listener of ``directory`` (resolved) and a pidfd on it: recorded, else searched."""
    entry = pidfile.read(directory / pidfile.PIDFILE_NAME)
    return _open_recorded(entry, directory) or _open_searched(directory)


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait up to ``timeout`` seconds (None: forever) for ``fd`` to become readable."""
    if fd < 0:
        raise ValueError("the runner's descriptors are closed")
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def _send(pidfd: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signum)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _waitid(pidfd: int) -> int | None:
    """The exit status of an adopted process that happens to be our child, else None."""
    try:
        result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return None
    if result is None:
        return None
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


def _open_recorded(
    entry: pidfile.PidRecord | None, directory: Path
) -> tuple[pidfile.PidRecord, int] | None:
    """A pidfd on the recorded listener when it still is the one recorded."""
    if entry is None:
        return None
    try:
        pidfd = os.pidfd_open(entry.pid)
    except ProcessLookupError:
        return None
    # Checked after opening: a pidfd cannot drift to a reused pid, a bare pid can.
    if entry.matches() and procfs.cwd(entry.pid) == directory:
        return entry, pidfd
    os.close(pidfd)
    return None


def _open_searched(directory: Path) -> tuple[pidfile.PidRecord, int] | None:
    """A pidfd on a listener working in ``directory``, found by scanning /proc."""
    for pid in procfs.pids():
        if procfs.cwd(pid) != directory or not procfs.is_named(pid, LISTENER_PROGRAM):
            continue
        entry = pidfile.record(pid)
        if entry is None:
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        if entry.matches():
            return entry, pidfd
        os.close(pidfd)
    return None
