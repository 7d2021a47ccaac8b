"""Unpack a runner tarball safely and swap it in for a runner folder in one step.

Safety. Every member is checked before anything is written: no absolute names, no
``..``, no devices or fifos, and no write that would pass through a symlink to a place
outside the folder. Whether a path is inside is decided on the real file system of the
staging folder (``realpath``), which only this code is changing, so a chain of links
that each look harmless cannot smuggle a write out. Symlinks are checked once more when
the whole archive is down, because a later link can change where an earlier one points.
The archive's SHA-256 is computed from the same bytes as they are read, so a tarball
swapped after it was verified is caught too.

Atomicity. The archive goes into a sibling staging folder. Only when it is complete
does the runtime state of the old folder (``_work``, ``runner.log*``, ``runner.pid``,
the registration files, anything else the tarball did not bring) move across, by
rename, and the two folders are exchanged with ``renameat2(RENAME_EXCHANGE)``: at no
moment is the runner folder missing or half-written. A full disk, a bad checksum or a
refused member leave the old folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, cast

from runnerctl.distribution.download import disk_error, fsync_folder
from runnerctl.errors import ChecksumMismatch, DistributionError

log = logging.getLogger(__name__)

#: Written into every runner folder this module installs.
MANIFEST = ".runnerctl-install.json"
_CHUNK = 1 << 20
# Left behind by the runner's own self-update; never worth carrying to a fresh install.
_UPDATE_LEFTOVER = re.compile(r"^(bin|externals)\.\d+\.\d+\.\d+$")


class _HashingReader:
    """A read-only file wrapper that hashes every byte handed out."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data

    def finish(self) -> str:
        """Hash whatever the reader left unread and return the whole file's digest."""
        while self.read(_CHUNK):
            pass
        return self._digest.hexdigest()


def _folder_error(error: OSError, dest: Path) -> DistributionError:
    """A runner folder that cannot be made, with what to change about base_dir."""
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        fix = f"a part of {dest.parent} is a file, not a folder; move it or change base_dir"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = (
            f"the manager cannot write {dest.parent}; make base_dir a writable folder "
            "for the user it runs as, outside read-only mounts"
        )
    else:
        return disk_error(error, f"preparing {dest}")
    return DistributionError(f"preparing {dest}: {error.strerror or error}; {fix}")


def install(tarball: Path, sha256: str, version: str, dest: Path) -> None:
    """Unpack ``tarball`` (which must hash to ``sha256``) as the new ``dest`` folder."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise DistributionError(f"{dest} exists and is not a folder; move it away")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.new-"))
    except OSError as error:
        raise _folder_error(error, dest) from None
    try:
        entries = _unpack(tarball, sha256, staging)
        _write_manifest(staging, version, sha256, entries)
        old = _swap_in(staging, dest, entries)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise disk_error(error, f"installing {tarball.name} into {dest}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            log.warning("could not remove old runner files at %s; remove them by hand", old)
    log.info("installed: %s into %s", tarball.name, dest)


def installed_version(folder: Path) -> str | None:
    """The runner version this module last installed in ``folder``, or None."""
    manifest = _read_manifest(folder)
    version = manifest.get("version") if manifest else None
    return version if isinstance(version, str) else None


def _unpack(tarball: Path, sha256: str, staging: Path) -> set[str]:
    """Extract every member into ``staging``, verify the hash; return the top-level names."""
    root = os.path.realpath(staging)
    with tarball.open("rb") as raw:
        reader = _HashingReader(raw)
        try:
            entries = _extract_all(reader, tarball, root)
        except (tarfile.TarError, EOFError, zlib.error) as error:
            # A corrupt file is usually a checksum problem; report it as such when it is.
            _verify(reader.finish(), sha256, tarball)
            raise DistributionError(f"{tarball} is not a readable .tar.gz: {error}") from None
        except OSError as error:
            raise disk_error(error, f"unpacking {tarball.name} into {staging.parent}") from None
        _verify(reader.finish(), sha256, tarball)
    _check_links(staging, root, tarball)
    return entries


def _verify(actual: str, expected: str, tarball: Path) -> None:
    if actual != expected:
        raise ChecksumMismatch(
            f"{tarball} has SHA-256 {actual}, not {expected}; nothing was installed "
            "(delete it and its .sha256 so it is downloaded again)"
        )


def _extract_all(reader: _HashingReader, tarball: Path, root: str) -> set[str]:
    """Stream the archive member by member; directory modes are applied last."""
    entries: set[str] = set()
    folders: list[tuple[str, int]] = []
    # tarfile's stream mode needs only read(); the stubs ask for a whole binary file.
    stream = cast(BinaryIO, reader)
    with tarfile.open(fileobj=stream, mode="r|gz") as archive:
        for member in archive:
            name = _member_name(member.name, tarball)
            if name is None:
                continue
            entries.add(name.split("/", 1)[0])
            target = os.path.join(root, name)
            _require_inside(os.path.dirname(target), root, member.name, tarball)
            if member.isdir():
                _make_folder(target, root, member.name, tarball)
                folders.append((target, member.mode & 0o777))
            elif member.isreg():
                _write_file(archive, member, target)
            elif member.issym():
                _make_symlink(member, target, root, tarball)
            elif member.islnk():
                _make_hardlink(member, target, root, tarball)
            else:
                raise _refusal(tarball, member.name, "is a device, fifo or other special file")
    for path, mode in reversed(folders):
        os.chmod(path, mode)
    return entries


def _member_name(name: str, tarball: Path) -> str | None:
    """The member's path relative to the folder, or None for the folder itself."""
    if name.startswith("/"):
        raise _refusal(tarball, name, "is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refusal(tarball, name, "climbs out with '..'")
    return "/".join(parts) or None


def _require_inside(path: str, root: str, member: str, tarball: Path) -> None:
    """Refuse a member whose real location (after existing links) is outside ``root``."""
    if not _inside(os.path.realpath(path), root):
        raise _refusal(tarball, member, "would be written outside the folder through a link")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _make_folder(target: str, root: str, member: str, tarball: Path) -> None:
    _require_inside(target, root, member, tarball)
    os.makedirs(target, mode=0o755, exist_ok=True)


def _write_file(archive: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
    """Write one regular file; O_NOFOLLOW so a link already at ``target`` is never followed."""
    _remove_existing(target)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    source = archive.extractfile(member)
    if source is None:  # pragma: no cover - tarfile returns a reader for every regular file
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
        # Permission bits only: no setuid or setgid from a downloaded archive.
        os.fchmod(out.fileno(), member.mode & 0o777)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _make_symlink(member: tarfile.TarInfo, target: str, root: str, tarball: Path) -> None:
    if os.path.isabs(member.linkname):
        raise _refusal(tarball, member.name, f"links to the absolute path {member.linkname!r}")
    parent = os.path.realpath(os.path.dirname(target))
    pointed = os.path.realpath(os.path.join(parent, member.linkname))
    if not _inside(pointed, root):
        raise _refusal(tarball, member.name, f"links outside the folder ({member.linkname!r})")
    _remove_existing(target)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    os.symlink(member.linkname, target)


def _make_hardlink(member: tarfile.TarInfo, target: str, root: str, tarball: Path) -> None:
    linked = _member_name(member.linkname, tarball)
    source = os.path.join(root, linked or "")
    if linked is None or not _inside(os.path.realpath(source), root):
        raise _refusal(tarball, member.name, f"hard-links outside the folder ({member.linkname!r})")
    if os.path.islink(source) or not os.path.isfile(source):
        raise _refusal(tarball, member.name, "hard-links to something that is not a file in it")
    _remove_existing(target)
    os.link(os.path.realpath(source), target, follow_symlinks=False)


def _remove_existing(target: str) -> None:
    """Make room for a member that repeats an earlier name (a later member wins, as in tar)."""
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)


def _check_links(staging: Path, root: str, tarball: Path) -> None:
    """Refuse the archive if any symlink, now that all are in place, resolves outside."""
    for folder, dirs, files in os.walk(staging):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), root):
                member = os.path.relpath(path, root)
                raise _refusal(tarball, member, "ends up linking outside the folder")


def _refusal(tarball: Path, member: str, why: str) -> DistributionError:
    return DistributionError(f"{tarball.name}: member {member!r} {why}; refusing the whole archive")


def _write_manifest(staging: Path, version: str, sha256: str, entries: set[str]) -> None:
    manifest = {"version": version, "sha256": sha256, "entries": sorted(entries)}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _read_manifest(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _carried_names(dest: Path, new_entries: set[str]) -> list[str]:
    """Top-level names in the old folder that are runtime state rather than distribution."""
    old_manifest = _read_manifest(dest) or {}
    old_entries = old_manifest.get("entries")
    shipped = set(new_entries) | {MANIFEST}
    if isinstance(old_entries, list):
        shipped |= {name for name in old_entries if isinstance(name, str)}
    return sorted(
        name
        for name in os.listdir(dest)
        if name not in shipped and not _UPDATE_LEFTOVER.match(name)
    )


def _swap_in(staging: Path, dest: Path, new_entries: set[str]) -> Path | None:
    """Make ``staging`` the new ``dest``; return where the old folder now is, if any."""
    if not dest.exists():
        os.rename(staging, dest)
        fsync_folder(dest.parent)
        return None
    carried = _carried_names(dest, new_entries)
    moved: list[str] = []
    try:
        for name in carried:
            os.rename(dest / name, staging / name)
            moved.append(name)
        old = _exchange(staging, dest)
    except BaseException:
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(staging / name, dest / name)
        raise
    fsync_folder(dest.parent)
    if carried:
        log.debug("kept in %s: %s", dest, ", ".join(carried))
    return old


def _exchange(staging: Path, dest: Path) -> Path:
    """Swap two folders; return the path that now holds the old ``dest``."""
    if _rename_exchange(staging, dest):
        return staging
    # No RENAME_EXCHANGE here: two renames, with a moment in which dest is missing.
    aside = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
    os.rmdir(aside)
    os.rename(dest, aside)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(aside, dest)
        raise
    return aside


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _rename_exchange(first: Path, second: Path) -> bool:
    """``renameat2(RENAME_EXCHANGE)``; False where the C library or file system lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
