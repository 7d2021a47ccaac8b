"""A minimal inotify binding (ctypes, Linux only): one descriptor, readable on change.

The descriptor goes into ``select`` or ``multiprocessing.connection.wait`` like any
other, which is the point: the worker learns that ``runner.log`` grew, or that
``update.finished`` appeared, from the kernel, with no polling loop.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from pathlib import Path

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_IGNORED = 0x00008000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")
# The process's own symbols include libc's; find_library would run ldconfig to say so.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int


@dataclass(frozen=True)
class Change:
    """One inotify event: the watch it belongs to, what happened, and the file name."""

    watch: int
    mask: int
    name: str


class Inotify:
    """An inotify instance; ``fileno()`` is readable whenever a watched path changed."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"inotify_init1: {os.strerror(error)}")
        self._fd: int = int(fd)

    def watch(self, path: Path, mask: int) -> int:
        """Watch ``path`` (a file or a folder) for the events in ``mask``."""
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"inotify_add_watch {path}: {os.strerror(error)}")
        return int(wd)

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("inotify descriptor is closed")
        return self._fd

    def read(self) -> list[Change]:
        """Every pending event, without blocking (an empty list when none)."""
        changes: list[Change] = []
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return changes
            changes.extend(_parse(data))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parse(data: bytes) -> list[Change]:
    changes = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        raw = data[start : start + length].split(b"\0", 1)[0]
        changes.append(Change(wd, mask, os.fsdecode(raw)))
        offset = start + length
    return changes
