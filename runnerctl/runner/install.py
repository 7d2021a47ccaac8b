"""Installing a slot's runner version into its folder, from the verified cache.

The cache swaps the new version in atomically and carries the folder's runtime state
across (``_work``, ``runner.log*``, ``runner.pid``, registration files), so changing
versions never loses a work folder or a log. Nothing is installed while a process still
works in the folder: after exit codes 3 and 4 the runner's own ``_update.sh`` may still
be swapping ``bin`` and ``externals``, and it signals the end with ``update.finished``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from pathlib import Path
from typing import Any, Protocol

from runnerctl import procfs
from runnerctl.distribution import installed_version
from runnerctl.errors import RunnerError
from runnerctl.runner.environment import Account
from runnerctl.runner.inotify import IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO, Inotify
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

UPDATER = "_update.sh"
UPDATE_MARK = "update.finished"
#: The runner's own wrapper waits about 31 s for an update; allow a little more.
UPDATE_TIMEOUT = 35.0


class Cache(Protocol):
    """``runnerctl.distribution.RunnerCache``, as far as installing needs it."""

    def ensure(self, scope: Scope, version: str) -> Any: ...

    def extract(self, tarball: Any, dest_dir: Path) -> None: ...


def install(
    directory: Path, scope: Scope, version: str, cache: Cache, account: Account | None
) -> str:
    """Make ``directory`` hold ``version`` (``latest`` resolved); the version installed."""
    settle_update(directory)
    tarball = cache.ensure(scope, version)
    current = installed_version(directory)
    listener = directory / "bin" / "Runner.Listener"
    if current == tarball.version and listener.exists():
        log.debug("installed already: %s has %s", directory, current)
    else:
        others = processes_in(directory)
        if others:
            raise RunnerError(
                f"{directory}: processes {others} still work here; stop them before installing"
            )
        cache.extract(tarball, directory)
        log.info(
            "installed: %s into %s (%s)",
            tarball.version,
            directory,
            f"was {current}" if current else "fresh",
        )
        if account is not None:
            chown_tree(directory, account)
    if account is not None and directory.stat().st_uid != account.uid:
        chown_tree(directory, account)
    return str(tarball.version)


def settle_update(directory: Path, timeout: float = UPDATE_TIMEOUT) -> bool:
    """Wait for a self-update in ``directory`` to finish; True when one did.

    An update is in flight while a process works in the folder and no
    ``update.finished`` exists yet. The wait sleeps on inotify, bounded by ``timeout``.
    """
    mark = directory / UPDATE_MARK
    if not (mark.exists() or (directory / UPDATER).exists()):
        # No self-update ever started here (the runner writes _update.sh before it
        # runs it): skip the /proc scan and the inotify set-up, which cost a respawn
        # milliseconds each.
        return False
    with Inotify() as watch:
        watch.watch(directory, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)
        deadline = time.monotonic() + timeout
        while not mark.exists() and processes_in(directory):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("update unfinished: %s after %.0fs", directory, timeout)
                return False
            _wait_for_change(watch, processes_in(directory), remaining)
    if not mark.exists():
        return False
    mark.unlink()
    log.info("update finished: %s", directory)
    return True


def _wait_for_change(watch: Inotify, pids: list[int], timeout: float) -> None:
    """Sleep until the folder changes or one of ``pids`` exits (no polling)."""
    pidfds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            pidfds.append(os.pidfd_open(pid))
    try:
        select.select([watch.fileno(), *pidfds], [], [], timeout)
        watch.read()
    finally:
        for fd in pidfds:
            os.close(fd)


def processes_in(directory: Path) -> list[int]:
    """Live processes working in ``directory`` itself, as the listener and ``_update.sh`` do.

    Jobs work further down, in ``_work``; what they leave behind does not block an install.
    """
    root = directory.resolve()
    return [
        pid
        for pid in procfs.pids()
        if pid != os.getpid() and procfs.cwd(pid) == root and procfs.alive(pid)
    ]


def chown_tree(directory: Path, account: Account) -> None:
    """Give ``directory`` and everything in it to ``account`` (symlinks themselves)."""
    for parent, folders, files in os.walk(directory):
        os.lchown(parent, account.uid, account.gid)
        for name in folders + files:
            os.lchown(os.path.join(parent, name), account.uid, account.gid)
    log.info("chowned: %s to %s", directory, account.name)
