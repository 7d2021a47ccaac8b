"""The runner download cache that every worker shares.

``ensure(scope, version)`` returns a verified tarball in ``cache_dir``, downloading it
only when no good copy is there. Many workers asking for one version at once line up
on that version's lock file: the first downloads, the rest find the file in place. A
tarball an operator copies in with its ``.sha256`` is used as is, with no network,
which is how an air-gapped host is provisioned.

``latest`` costs one REST call to resolve. The answer is remembered in
``latest-linux-<arch>.json`` for ``latest_ttl`` seconds and shared by all processes, so
a pool of ephemeral runners respawning all day does not spend its API budget asking.
When GitHub cannot be reached, ``latest`` falls back to the newest cached version.

Pruning keeps the ``keep`` newest versions of each architecture, plus any version
ensured within the last ``grace`` seconds (a slot pinned to an older version keeps
using its tarball), and never touches a tarball another process holds locked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from runnerctl.distribution.download import (
    DownloadPolicy,
    checksum_path,
    disk_error,
    fetch,
    read_checksum_file,
    sha256_of,
)
from runnerctl.distribution.extract import install
from runnerctl.distribution.locking import LockBusy, file_lock
from runnerctl.distribution.versions import (
    RunnerDownload,
    RunnerSource,
    check_version,
    host_arch,
    parse_tarball_name,
    resolve_latest,
    resolve_pinned,
    tarball_name,
    version_key,
)
from runnerctl.errors import ChecksumMismatch, DistributionError, RateLimited, Unreachable
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

_PARTIAL_SUFFIX = ".part"


@dataclass(frozen=True)
class CachedTarball:
    """A verified runner tarball in the cache."""

    path: Path
    version: str
    sha256: str
    arch: str


class RunnerCache:
    """Verified runner tarballs in ``cache_dir``, fetched through ``github`` when missing."""

    def __init__(
        self,
        cache_dir: Path | str,
        github: RunnerSource | None = None,
        keep: int = 3,
        *,
        arch: str | None = None,
        latest_ttl: float = 600.0,
        grace: float = 86400.0,
        policy: DownloadPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if keep < 1:
            raise DistributionError(f"keep_versions is {keep}; keep at least 1 runner version")
        self.cache_dir = Path(cache_dir)
        self.keep = keep
        self.arch = arch or host_arch()
        self.latest_ttl = latest_ttl
        self.grace = grace
        self._github = github
        self._policy = policy or DownloadPolicy()
        self._session = session
        # path -> (device, inode, size, mtime_ns, sha256) of files hashed by this process.
        self._hashed: dict[Path, tuple[int, int, int, int, str]] = {}

    def ensure(self, scope: Scope, version: str) -> CachedTarball:
        """A verified tarball of ``version`` (``latest`` or ``X.Y.Z``) for this host."""
        check_version(version)
        self._make_cache_dir()
        try:
            if version == "latest":
                return self._ensure_latest(scope)
            return self._ensure_version(version, lambda: self._resolve_pinned(version))
        except OSError as error:
            # Network errors arrive as DistributionError or GitHubError; this is the disk.
            raise disk_error(error, f"runner cache {self.cache_dir}") from None

    def extract(self, tarball: CachedTarball, dest_dir: Path | str) -> None:
        """Install ``tarball`` as ``dest_dir``, atomically, keeping the folder's runtime state."""
        try:
            self._extract(tarball, Path(dest_dir))
        except OSError as error:
            raise disk_error(error, f"runner cache {self.cache_dir}") from None

    def _extract(self, tarball: CachedTarball, dest_dir: Path) -> None:
        lock = self._lock_path(tarball.arch, tarball.version)
        with file_lock(lock, shared=True):
            try:
                identity = _identity(tarball.path)
            except FileNotFoundError:
                raise DistributionError(
                    f"{tarball.path} left the cache before it was unpacked; ensure it again"
                ) from None
            try:
                install(tarball.path, tarball.sha256, tarball.version, dest_dir)
                return
            except ChecksumMismatch:
                pass
        # Drop the damaged copy (under the exclusive lock) so the next ensure() fetches anew.
        with file_lock(lock):
            if _same_file(tarball.path, identity):
                self._remove(tarball.path)
        raise ChecksumMismatch(
            f"{tarball.path} no longer matches its SHA-256 {tarball.sha256}; "
            "removed it, and the next install downloads it again"
        )

    def prune(self) -> list[str]:
        """Remove tarballs beyond the ``keep`` newest versions; return the removed names."""
        return self._prune(protect=())

    def cached_versions(self) -> list[str]:
        """Versions with a tarball and ``.sha256`` for this host, newest first (unverified)."""
        found = [
            version
            for arch, version, path in self._tarballs()
            if arch == self.arch and checksum_path(path).exists()
        ]
        return sorted(found, key=version_key, reverse=True)

    def _ensure_latest(self, scope: Scope) -> CachedTarball:
        remembered = self._remembered_latest()
        if remembered is not None:
            cached = self._cached_locked(remembered)
            if cached is not None:
                return cached
        try:
            source = self._resolve_latest(scope)
        except (Unreachable, RateLimited, DistributionError) as error:
            fallback = self._newest_cached()
            if fallback is None:
                raise
            log.warning("using cached runner %s: latest unknown (%s)", fallback.version, error)
            return fallback
        self._remember_latest(source.version)
        return self._ensure_version(source.version, lambda: source)

    def _ensure_version(self, version: str, resolve: Callable[[], RunnerDownload]) -> CachedTarball:
        """The cached tarball of ``version``, downloading it under its lock when missing."""
        cached = self._cached_locked(version)
        if cached is not None:
            return cached
        path = self.cache_dir / tarball_name(self.arch, version)
        with file_lock(self._lock_path(self.arch, version)):
            # Another process may have fetched it while this one waited for the lock.
            cached = self._cached(path, version, remove_bad=True)
            if cached is None:
                source = resolve()
                fetch(source, self.cache_dir, self._http(), self._policy)
                self._note_hash(path, source.sha256)
                cached = CachedTarball(path, version, source.sha256, self.arch)
                downloaded = True
            else:
                downloaded = False
            self._touch(version)
        if downloaded:
            self._prune(protect=(version,))
        return cached

    def _cached_locked(self, version: str) -> CachedTarball | None:
        """A verified cached tarball of ``version``, checked under a shared lock."""
        path = self.cache_dir / tarball_name(self.arch, version)
        if not path.exists():
            return None
        with file_lock(self._lock_path(self.arch, version), shared=True):
            cached = self._cached(path, version, remove_bad=False)
        if cached is not None:
            self._touch(version)
        return cached

    def _cached(self, path: Path, version: str, *, remove_bad: bool) -> CachedTarball | None:
        """The tarball at ``path`` if it and its ``.sha256`` agree; otherwise None."""
        if not path.exists():
            return None
        expected = read_checksum_file(path)
        if expected is None:
            log.warning("ignoring %s: no %s beside it", path, checksum_path(path).name)
            return None
        actual = self._hash(path)
        if actual == expected:
            return CachedTarball(path, version, expected, self.arch)
        log.error("rejected: %s (sha256 %s, its .sha256 says %s)", path, actual, expected)
        if remove_bad:
            self._remove(path)
        return None

    def _resolve_pinned(self, version: str) -> RunnerDownload:
        if self._github is None:
            name = tarball_name(self.arch, version)
            raise DistributionError(
                f"runner {version} is not in {self.cache_dir} and there is no GitHub access "
                f"to fetch it; copy {name} and {name}.sha256 there"
            )
        return resolve_pinned(self._github, version, self.arch)

    def _resolve_latest(self, scope: Scope) -> RunnerDownload:
        if self._github is None:
            raise DistributionError(
                f"cannot tell the latest runner without GitHub access and {self.cache_dir} "
                "holds none; copy a tarball and its .sha256 there, or pin a version"
            )
        return resolve_latest(self._github, scope, self.arch)

    def _newest_cached(self) -> CachedTarball | None:
        for version in self.cached_versions():
            cached = self._cached_locked(version)
            if cached is not None:
                return cached
        return None

    def _prune(self, protect: tuple[str, ...]) -> list[str]:
        removed: list[str] = []
        by_arch: dict[str, list[str]] = {}
        for arch, version, _ in self._tarballs():
            by_arch.setdefault(arch, []).append(version)
        for arch, versions in by_arch.items():
            versions.sort(key=version_key, reverse=True)
            for version in versions[self.keep :]:
                if version in protect or self._recently_used(arch, version):
                    continue
                removed += self._prune_version(arch, version)
        removed += self._prune_partials()
        return removed

    def _prune_version(self, arch: str, version: str) -> list[str]:
        lock = self._lock_path(arch, version)
        path = self.cache_dir / tarball_name(arch, version)
        try:
            with file_lock(lock, wait=False):
                self._remove(path)
                lock.unlink()
        except LockBusy:
            log.debug("kept %s: in use by another process", path.name)
            return []
        log.info("pruned: %s", path.name)
        return [path.name]

    def _prune_partials(self) -> list[str]:
        """Remove temporary files that downloads which died left behind."""
        removed = []
        for entry in self.cache_dir.glob(f".actions-runner-*{_PARTIAL_SUFFIX}"):
            parsed = parse_tarball_name(entry.name[1:].split(".tar.gz.", 1)[0] + ".tar.gz")
            if parsed is None:
                continue
            try:
                with file_lock(self._lock_path(*parsed), wait=False):
                    entry.unlink(missing_ok=True)
            except LockBusy:
                continue
            removed.append(entry.name)
        return removed

    def _tarballs(self) -> list[tuple[str, str, Path]]:
        """``(arch, version, path)`` of every runner tarball in the cache."""
        if not self.cache_dir.is_dir():
            return []
        found = []
        for path in self.cache_dir.iterdir():
            parsed = parse_tarball_name(path.name)
            if parsed is not None:
                found.append((parsed[0], parsed[1], path))
        return found

    def _hash(self, path: Path) -> str:
        """The file's SHA-256, hashed once per process while the file stays unchanged."""
        stat = path.stat()
        key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        known = self._hashed.get(path)
        if known is not None and known[:4] == key:
            return known[4]
        digest = sha256_of(path)
        self._hashed[path] = (*key, digest)
        return digest

    def _note_hash(self, path: Path, sha256: str) -> None:
        stat = path.stat()
        self._hashed[path] = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, sha256)

    def _remove(self, path: Path) -> None:
        self._hashed.pop(path, None)
        path.unlink(missing_ok=True)
        checksum_path(path).unlink(missing_ok=True)

    def _lock_path(self, arch: str, version: str) -> Path:
        return self.cache_dir / f".{tarball_name(arch, version)}.lock"

    def _touch(self, version: str) -> None:
        """Mark ``version`` as used now, which shields it from pruning for ``grace`` s."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._lock_path(self.arch, version))

    def _recently_used(self, arch: str, version: str) -> bool:
        try:
            used = self._lock_path(arch, version).stat().st_mtime
        except FileNotFoundError:
            return False
        return time.time() - used < self.grace

    def _latest_path(self) -> Path:
        return self.cache_dir / f"latest-linux-{self.arch}.json"

    def _remembered_latest(self) -> str | None:
        """The latest version resolved within ``latest_ttl`` seconds, by any process."""
        try:
            data = json.loads(self._latest_path().read_text(encoding="utf-8"))
            version, checked = str(data["version"]), float(data["checked_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not 0 <= time.time() - checked < self.latest_ttl:
            return None
        return version

    def _remember_latest(self, version: str) -> None:
        path = self._latest_path()
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        data = {"version": version, "checked_at": time.time()}
        try:
            temp.write_text(json.dumps(data) + "\n", encoding="utf-8")
            os.replace(temp, path)
        except OSError as error:
            temp.unlink(missing_ok=True)
            log.warning("could not record the latest runner version in %s: %s", path, error)

    def _make_cache_dir(self) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DistributionError(
                f"cannot create the runner cache {self.cache_dir}: {error.strerror}; "
                "set manager.cache_dir to a writable folder"
            ) from None

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _same_file(path: Path, identity: tuple[int, int]) -> bool:
    try:
        return _identity(path) == identity
    except FileNotFoundError:
        return False
