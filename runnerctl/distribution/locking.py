"""Advisory file locks that let many worker processes share one download cache.

One lock file per tarball. Downloading and pruning a version hold it exclusively;
extracting holds it shared, so a prune never removes a tarball that is being read.
A lock file may itself be removed by a prune, so after locking we check that the path
still names the file we locked, and start again if it does not.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusy(Exception):
    """A non-blocking lock is held by another process."""


@contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[None]:
    """Hold an flock on ``path`` (created if missing) for the ``with`` block."""
    operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if not wait:
        operation |= fcntl.LOCK_NB
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(str(path)) from None
        if _still_names(path, fd):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _still_names(path: Path, fd: int) -> bool:
    """Whether ``path`` still refers to the open file ``fd`` (it was not removed meanwhile)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
