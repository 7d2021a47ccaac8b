"""A token cache shared by every runnerctl process on the host, kept in ``state_dir``.

Every worker needs the same installation token and the same registration token for its
scope. Minting one per worker or per respawn would spend the installation's hourly API
budget on nothing, so the first process that needs a token mints it and writes it to a
file; the others read the file until the token nears its expiry.

Why files and ``flock`` rather than asking the root process: the root does no network
I/O by design, and workers outlive each other. A lock per key makes concurrent workers
mint once: the loser of the race waits on the lock, then finds the winner's token.

The folder is 0700 and every file 0600, written to a temporary name and renamed into
place so a reader never sees half a file. Values are never logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Refresh a token this long before it expires (a quarter of its life if that is shorter).
REFRESH_MARGIN = 300.0


@dataclass(frozen=True)
class Entry:
    """One cached secret or value, with when it was issued and when it expires."""

    value: str
    expires_at: float
    issued_at: float

    def fresh(self, now: float) -> bool:
        """True while more than the refresh margin of its life is left."""
        margin = min(REFRESH_MARGIN, 0.25 * max(self.expires_at - self.issued_at, 0.0))
        return self.expires_at - now > margin

    def __repr__(self) -> str:
        return f"Entry(expires_at={self.expires_at:.0f})"


class SharedTokens:
    """Get-or-mint for named entries, shared through files when ``folder`` is given."""

    def __init__(self, folder: Path | None, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._memory: dict[str, Entry] = {}
        self._thread_lock = threading.RLock()  # minting one entry may fetch another
        self.folder = _prepare(folder) if folder is not None else None

    def fetch(self, key: str, mint: Callable[[], Entry], stale: str | None = None) -> Entry:
        """The fresh entry for ``key``, minting it (once across processes) when needed.

        ``stale`` names a value the caller saw refused: an entry holding it is replaced.
        """
        with self._thread_lock:
            entry = self._usable(self._memory.get(key), stale)
            if entry is None and self.folder is not None:
                entry = self._fetch_shared(key, mint, stale)
            if entry is None:
                entry = mint()
            self._memory[key] = entry
            return entry

    def forget(self, key: str) -> None:
        """Drop ``key`` here and on disk, e.g. after GitHub said it no longer exists."""
        with self._thread_lock:
            self._memory.pop(key, None)
            if self.folder is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(key))

    def _fetch_shared(self, key: str, mint: Callable[[], Entry], stale: str | None) -> Entry:
        path = self._path(key)
        entry = self._usable(_read(path), stale)
        if entry is not None:
            return entry
        with _locked(path.with_suffix(".lock")):
            # Another process may have minted while this one waited for the lock.
            entry = self._usable(_read(path), stale)
            if entry is None:
                entry = mint()
                _write(path, entry)
                log.debug(
                    "shared: minted %s (expires in %.0fs)", key, entry.expires_at - self._clock()
                )
            return entry

    def _usable(self, entry: Entry | None, stale: str | None) -> Entry | None:
        if entry is None or entry.value == stale or not entry.fresh(self._clock()):
            return None
        return entry

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        return self.folder / f"{readable}-{digest}.json"


def _prepare(folder: Path) -> Path | None:
    """Create the folder 0700; fall back to memory only when it cannot be used."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as error:
        log.warning("shared: cannot use %s (%s); tokens are cached in memory only", folder, error)
        return None
    return folder


def _read(path: Path) -> Entry | None:
    try:
        data = json.loads(path.read_text())
        return Entry(str(data["value"]), float(data["expires_at"]), float(data["issued_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("shared: ignoring unreadable cache file %s (%s)", path, type(error).__name__)
        return None


def _write(path: Path, entry: Entry) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(asdict(entry), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
