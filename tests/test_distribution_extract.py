"""Unpacking runner tarballs: refused members, atomic replacement, kept runtime state."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runnerctl.distribution import installed_version
from runnerctl.distribution.extract import install
from runnerctl.errors import ChecksumMismatch, DistributionError
from runnerctl.sandbox import tarballs


@dataclass(frozen=True)
class Member:
    """One entry of a hand-made archive."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    mode: int = 0o644


def make_tarball(path: Path, members: list[Member]) -> str:
    """Write a .tar.gz of ``members`` to ``path``; return its SHA-256."""
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = member.mode
            info.linkname = member.link
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(member.data) if info.size else None)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runner_tarball(folder: Path, version: str) -> tuple[Path, str]:
    """The stand-in runner's tarball for ``version`` and its SHA-256."""
    path = tarballs.build_tarball(version, "x64", folder)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` with its content (files) or link target (links)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = path.read_bytes()
        else:
            found[key] = "dir"
    return found


@pytest.fixture
def old_install(tmp_path: Path) -> Iterator[Path]:
    """A runner folder with version 2.335.0 installed and some runtime state."""
    dest = tmp_path / "runners" / "ci-1"
    tarball, sha = runner_tarball(tmp_path / "dist", "2.335.0")
    install(tarball, sha, "2.335.0", dest)
    (dest / "_work" / "repo").mkdir(parents=True)
    (dest / "_work" / "repo" / "checkout.txt").write_text("job files\n")
    (dest / "runner.log").write_text("line 1\n")
    (dest / "runner.log.1").write_text("older\n")
    (dest / "runner.pid").write_text("4242\n")
    (dest / ".runner").write_text('{"agentName": "ci-1"}')
    yield dest


def leftovers(parent: Path, name: str) -> list[str]:
    """Staging or old folders left next to ``parent/name``."""
    return [entry.name for entry in parent.iterdir() if entry.name.startswith(f".{name}.")]


def test_install_into_a_new_folder(tmp_path: Path) -> None:
    tarball, sha = runner_tarball(tmp_path, "2.336.0")
    dest = tmp_path / "runners" / "ci-1"

    install(tarball, sha, "2.336.0", dest)

    assert os.access(dest / "bin" / "Runner.Listener", os.X_OK)
    assert (dest / "bin" / "_runner_common.py").stat().st_mode & 0o777 == 0o644
    assert installed_version(dest) == "2.336.0"
    assert leftovers(dest.parent, "ci-1") == []


def test_replace_keeps_work_logs_pid_and_registration(old_install: Path, tmp_path: Path) -> None:
    (old_install / "bin.2.335.9").mkdir()  # what the runner's own self-update leaves
    tarball, sha = runner_tarball(tmp_path / "dist", "2.336.0")

    install(tarball, sha, "2.336.0", old_install)

    assert installed_version(old_install) == "2.336.0"
    assert (old_install / "_work" / "repo" / "checkout.txt").read_text() == "job files\n"
    assert (old_install / "runner.log").read_text() == "line 1\n"
    assert (old_install / "runner.log.1").read_text() == "older\n"
    assert (old_install / "runner.pid").read_text() == "4242\n"
    assert (old_install / ".runner").exists()
    assert not (old_install / "bin.2.335.9").exists()
    assert b'VERSION = "2.336.0"' in (old_install / "bin" / "_runner_build.py").read_bytes()
    assert leftovers(old_install.parent, "ci-1") == []


def test_an_open_log_keeps_writing_into_the_replaced_folder(
    old_install: Path, tmp_path: Path
) -> None:
    tarball, sha = runner_tarball(tmp_path / "dist", "2.336.0")
    with (old_install / "runner.log").open("a") as log:
        install(tarball, sha, "2.336.0", old_install)
        log.write("line 2\n")

    assert (old_install / "runner.log").read_text() == "line 1\nline 2\n"


def test_files_the_old_version_shipped_are_not_carried_over(tmp_path: Path) -> None:
    dest = tmp_path / "ci-1"
    old = tmp_path / "old.tar.gz"
    install(old, make_tarball(old, [Member("run.sh"), Member("retired.sh")]), "1.0.0", dest)
    (dest / "notes.txt").write_text("operator notes\n")
    new = tmp_path / "new.tar.gz"

    install(new, make_tarball(new, [Member("run.sh", b"new")]), "1.1.0", dest)

    assert sorted(os.listdir(dest)) == [".runnerctl-install.json", "notes.txt", "run.sh"]
    assert (dest / "run.sh").read_bytes() == b"new"


EVIL_ARCHIVES = {
    "parent traversal": [Member("bin/ok.sh"), Member("../escaped.txt", b"x")],
    "nested traversal": [Member("bin/../../escaped.txt", b"x")],
    "absolute path": [Member("/tmp/runnerctl-escaped.txt", b"x")],
    "symlink escaping": [Member("bin/out", kind=tarfile.SYMTYPE, link="../../..")],
    "absolute symlink": [Member("etc", kind=tarfile.SYMTYPE, link="/etc")],
    "write through a link": [
        Member("up", kind=tarfile.SYMTYPE, link="."),
        Member("up/escape", kind=tarfile.SYMTYPE, link="../outside"),
    ],
    "link redirected later": [
        Member("d", kind=tarfile.DIRTYPE, mode=0o755),
        Member("d/l", kind=tarfile.SYMTYPE, link="m/../../outside"),
        Member("d/m", kind=tarfile.SYMTYPE, link=".."),
    ],
    "write through a redirected link": [
        Member("d", kind=tarfile.DIRTYPE, mode=0o755),
        Member("d/l", kind=tarfile.SYMTYPE, link="m/../../outside"),
        Member("d/m", kind=tarfile.SYMTYPE, link=".."),
        Member("d/l/planted.txt", b"x"),
    ],
    "hard link escaping": [Member("passwd", kind=tarfile.LNKTYPE, link="../../etc/passwd")],
    "device": [Member("null", kind=tarfile.CHRTYPE)],
    "fifo": [Member("pipe", kind=tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(EVIL_ARCHIVES))
def test_unsafe_archives_are_refused_and_change_nothing(
    case: str, old_install: Path, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.tar.gz"
    sha = make_tarball(evil, EVIL_ARCHIVES[case])
    before = snapshot(old_install)
    around = [old_install.parent, old_install.parent.parent]
    around_before = [sorted(os.listdir(folder)) for folder in around]

    with pytest.raises(DistributionError, match="refusing the whole archive"):
        install(evil, sha, "9.9.9", old_install)

    assert snapshot(old_install) == before
    assert [sorted(os.listdir(folder)) for folder in around] == around_before
    assert leftovers(old_install.parent, "ci-1") == []
    assert not Path("/tmp/runnerctl-escaped.txt").exists()


def test_links_that_stay_inside_are_allowed(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar.gz"
    sha = make_tarball(
        archive,
        [
            Member("bin.2/tool", b"#!/bin/sh\n", mode=0o755),
            Member("bin", kind=tarfile.SYMTYPE, link="bin.2"),
            Member("bin.2/alias", kind=tarfile.LNKTYPE, link="bin.2/tool"),
        ],
    )
    dest = tmp_path / "ci-1"

    install(archive, sha, "1.0.0", dest)

    assert (dest / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert (dest / "bin.2" / "alias").stat().st_ino == (dest / "bin.2" / "tool").stat().st_ino


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    archive = tmp_path / "suid.tar.gz"
    sha = make_tarball(archive, [Member("tool", b"x", mode=0o4755)])

    install(archive, sha, "1.0.0", tmp_path / "ci-1")

    assert (tmp_path / "ci-1" / "tool").stat().st_mode & 0o7777 == 0o755


def test_a_tarball_that_differs_from_its_checksum_is_not_installed(
    old_install: Path, tmp_path: Path
) -> None:
    tarball, _sha = runner_tarball(tmp_path / "dist", "2.336.0")
    before = snapshot(old_install)

    with pytest.raises(ChecksumMismatch):
        install(tarball, "0" * 64, "2.336.0", old_install)

    assert snapshot(old_install) == before
    assert installed_version(old_install) == "2.335.0"
    assert leftovers(old_install.parent, "ci-1") == []


def test_a_damaged_tarball_is_reported_as_a_checksum_mismatch(tmp_path: Path) -> None:
    tarball, sha = runner_tarball(tmp_path / "dist", "2.336.0")
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tarball.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatch):
        install(tarball, sha, "2.336.0", tmp_path / "ci-1")
    assert not (tmp_path / "ci-1").exists()


def test_a_destination_that_is_a_file_is_refused(tmp_path: Path) -> None:
    tarball, sha = runner_tarball(tmp_path / "dist", "2.336.0")
    (tmp_path / "ci-1").write_text("not a folder")

    with pytest.raises(DistributionError, match="is not a folder"):
        install(tarball, sha, "2.336.0", tmp_path / "ci-1")


# -- a disk that fills up mid-extraction ------------------------------------------------


def _mount_tiny_tmpfs(folder: Path) -> bool:
    """Mount a 1 MiB tmpfs on ``folder``; False where this machine does not allow it."""
    folder.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 1 MiB file system, or None when mounting is not permitted here."""
    folder = tmp_path / "tiny"
    mounted = _mount_tiny_tmpfs(folder)
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


BIG_MEMBERS = [Member("run.sh", b"#!/bin/sh\n"), Member("externals/blob", os.urandom(3 << 20))]


def test_a_full_disk_mid_extraction_leaves_the_old_folder(
    tiny_disk: Path | None, tmp_path: Path
) -> None:
    big = tmp_path / "big.tar.gz"
    sha = make_tarball(big, BIG_MEMBERS)
    small = tmp_path / "small.tar.gz"
    small_sha = make_tarball(small, [Member("run.sh", b"#!/bin/sh\n"), Member("bin/tool", b"x")])
    if tiny_disk is None:
        # Not allowed to mount here: a file-size limit makes the write fail the same way.
        _extract_under_file_size_limit(small, small_sha, big, sha, tmp_path / "ci-1")
        return
    dest = tiny_disk / "ci-1"
    install(small, small_sha, "2.335.0", dest)
    (dest / "runner.log").write_text("line 1\n")
    before = snapshot(dest)

    with pytest.raises(DistributionError, match="No space left on device; free some space"):
        install(big, sha, "2.336.0", dest)

    assert snapshot(dest) == before
    assert leftovers(tiny_disk, "ci-1") == []


def _extract_under_file_size_limit(
    small: Path, small_sha: str, big: Path, big_sha: str, dest: Path
) -> None:
    install(small, small_sha, "2.335.0", dest)
    before = snapshot(dest)
    script = (
        "import resource, signal, sys; from pathlib import Path\n"
        "from runnerctl.distribution.extract import install\n"
        "from runnerctl.errors import DistributionError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({1 << 20}, {1 << 20}))\n"
        "try:\n"
        f"    install(Path({str(big)!r}), {big_sha!r}, '2.336.0', Path({str(dest)!r}))\n"
        "except DistributionError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3, result.stderr
    assert "File too large; free some space" in result.stdout
    assert snapshot(dest) == before
    assert leftovers(dest.parent, "ci-1") == []


def test_a_runner_folder_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    tarball, sha = runner_tarball(tmp_path / "dist", "2.336.0")
    (tmp_path / "runners").write_text("a file where a folder should be")

    with pytest.raises(DistributionError, match=r"preparing .*runners/ci-1"):
        install(tarball, sha, "2.336.0", tmp_path / "runners" / "ci-1")
