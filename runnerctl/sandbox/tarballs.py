"""Builds the stand-in actions runner tarballs from the files in ``dist/``.

A tarball is named like the real one (``actions-runner-linux-<arch>-<version>.tar.gz``)
and its bytes depend only on the version, the arch and the ``dist/`` files: members are
sorted, owned by 0:0, stamped with one fixed mtime, and the gzip header carries no name
and mtime 0. So its SHA-256 is stable and the double can publish it as GitHub does.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import tarfile
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

VERSIONS: tuple[str, ...] = ("2.329.0", "2.334.0", "2.335.0", "2.336.0")
LATEST = "2.336.0"
ARCHES = ("x64", "arm64")

DIST_DIR = Path(__file__).resolve().parent / "dist"

# One fixed timestamp for every member (2026-08-17, the day of the runner source used).
_MTIME = 1786924800
_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
# The module bin/Runner.Listener imports to learn which build it is.
_BUILD_MODULE = "bin/_runner_build.py"
_BIN_ENTRY_POINTS = ("Runner.Listener", "Runner.Worker")


def tarball_name(version: str, arch: str) -> str:
    """The release asset name of the stand-in runner for ``version`` and ``arch``."""
    return f"actions-runner-linux-{arch}-{version}.tar.gz"


def build_tarball(version: str, arch: str, out_dir: Path) -> Path:
    """Write the tarball for ``version``/``arch`` into ``out_dir`` and return its path.

    The write is atomic (temporary file, then rename), so concurrent builders and readers
    never see a half-written tarball.
    """
    if arch not in ARCHES:
        raise ValueError(f"unknown runner arch {arch!r}: use one of {', '.join(ARCHES)}")
    if not _VERSION_PATTERN.match(version):
        raise ValueError(f"runner version {version!r} is not X.Y.Z")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / tarball_name(version, arch)
    data = tarball_bytes(version, arch)
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=".building-", suffix=".tar.gz")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.debug("built tarball: %s (%d bytes)", target.name, len(data))
    return target


def tarball_bytes(version: str, arch: str) -> bytes:
    """The deterministic gzip-compressed tar of the stand-in runner."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content, mode in _members(version, arch):
            _add(archive, name, content, mode)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _members(version: str, arch: str) -> list[tuple[str, bytes | None, int]]:
    """(name, content or None for a directory, mode) of every member, sorted by name."""
    members: dict[str, tuple[bytes | None, int]] = {}
    for path in sorted(DIST_DIR.rglob("*")):
        relative = path.relative_to(DIST_DIR).as_posix()
        if "__pycache__" in relative.split("/") or relative.endswith(".pyc"):
            continue
        if path.is_dir():
            members[relative] = (None, 0o755)
        else:
            members[relative] = (path.read_bytes(), _mode_of(path))
    build = f'"""Written by the tarball builder."""\n\nVERSION = "{version}"\nARCH = "{arch}"\n'
    members[_BUILD_MODULE] = (build.encode(), 0o644)
    return [(name, content, mode) for name, (content, mode) in sorted(members.items())]


def _mode_of(path: Path) -> int:
    """Scripts and the bin/ entry points are executable; everything else is not."""
    # run-helper.sh.template is executable too: run.sh copies it and runs the copy.
    executable = path.name.endswith((".sh", ".sh.template"))
    return 0o755 if executable or path.name in _BIN_ENTRY_POINTS else 0o644


def _add(archive: tarfile.TarFile, name: str, content: bytes | None, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = _MTIME
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if content is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        return
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))
