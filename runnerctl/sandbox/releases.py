"""The stand-in runner's tarballs as GitHub publishes them: downloads and releases.

Tarballs come from ``runnerctl.sandbox.tarballs`` and are built on first use into the
sandbox's cache folder; their SHA-256 is computed once. A corrupted version keeps its
published checksum but is served with one byte flipped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runnerctl.sandbox import tarballs
from runnerctl.sandbox.state import ApiError, iso

logger = logging.getLogger(__name__)

# Release dates one week apart, oldest first, so "latest" is also the newest by date.
_FIRST_RELEASE = 1767225600
_WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class Tarball:
    version: str
    arch: str
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        return tarballs.tarball_name(self.version, self.arch)


class Distribution:
    """Builds, remembers and serves the tarballs of every version the double offers."""

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        self._built: dict[tuple[str, str], Tarball] = {}
        self._corrupted: set[str] = set()

    @property
    def versions(self) -> tuple[str, ...]:
        return tarballs.VERSIONS

    @property
    def latest(self) -> str:
        return tarballs.LATEST

    def tarball(self, version: str, arch: str) -> Tarball:
        """The tarball of ``version``/``arch``, built on first use; 404 if not offered."""
        if version not in tarballs.VERSIONS or arch not in tarballs.ARCHES:
            raise ApiError(404, "Not Found")
        with self._lock:
            built = self._built.get((version, arch))
            if built is None:
                path = tarballs.build_tarball(version, arch, self._cache_dir)
                data = path.read_bytes()
                built = Tarball(version, arch, data, hashlib.sha256(data).hexdigest())
                self._built[(version, arch)] = built
                logger.info("built: %s (sha256 %s)", built.name, built.sha256[:12])
            return built

    def corrupt(self, version: str) -> None:
        if version not in tarballs.VERSIONS:
            raise ApiError(404, f"version {version} is not offered")
        self._corrupted.add(version)

    def served_bytes(self, filename: str) -> bytes:
        """What ``/_downloads/<filename>`` returns, corrupted if the test asked so."""
        for version in tarballs.VERSIONS:
            for arch in tarballs.ARCHES:
                if tarballs.tarball_name(version, arch) == filename:
                    data = self.tarball(version, arch).data
                    if version in self._corrupted:
                        middle = len(data) // 2
                        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                    return data
        raise ApiError(404, "Not Found")

    def downloads_json(self, server_url: str) -> list[dict[str, Any]]:
        """The runner downloads list: the latest version only, as GitHub's is."""
        entries = []
        for arch in tarballs.ARCHES:
            tarball = self.tarball(tarballs.LATEST, arch)
            entries.append(
                {
                    "os": "linux",
                    "architecture": arch,
                    "download_url": f"{server_url}/_downloads/{tarball.name}",
                    "filename": tarball.name,
                    "sha256_checksum": tarball.sha256,
                }
            )
        return entries

    def release_json(self, tag: str, server_url: str, api_url: str) -> dict[str, Any]:
        """The release of ``tag`` (``v<version>`` or ``latest``) with assets and SHA markers."""
        version = tarballs.LATEST if tag == "latest" else tag.removeprefix("v")
        if (not tag.startswith("v") and tag != "latest") or version not in tarballs.VERSIONS:
            raise ApiError(404, "Not Found")
        index = tarballs.VERSIONS.index(version)
        published = iso(_FIRST_RELEASE + index * _WEEK)
        assets = []
        lines = []
        for arch_index, arch in enumerate(tarballs.ARCHES):
            tarball = self.tarball(version, arch)
            asset_id = 1000 * (index + 1) + arch_index
            key = f"linux-{arch}"
            lines.append(
                f"- {tarball.name} <!-- BEGIN SHA {key} -->{tarball.sha256}<!-- END SHA {key} -->"
            )
            assets.append(
                {
                    "id": asset_id,
                    "name": tarball.name,
                    "label": "",
                    "content_type": "application/octet-stream",
                    "state": "uploaded",
                    "size": len(tarball.data),
                    "digest": f"sha256:{tarball.sha256}",
                    "download_count": 0,
                    "created_at": published,
                    "updated_at": published,
                    "url": f"{api_url}/repos/actions/runner/releases/assets/{asset_id}",
                    "browser_download_url": f"{server_url}/_downloads/{tarball.name}",
                }
            )
        body = "\n".join(
            [
                f"## Stand-in runner {version}",
                "",
                "## SHA-256 Checksums",
                "",
                "The SHA-256 checksums of this release's packages:",
                "",
                *lines,
                "",
            ]
        )
        return {
            "id": index + 1,
            "tag_name": f"v{version}",
            "name": f"v{version}",
            "body": body,
            "draft": False,
            "prerelease": False,
            "immutable": False,
            "created_at": published,
            "published_at": published,
            "url": f"{api_url}/repos/actions/runner/releases/{index + 1}",
            "assets": assets,
        }

    def asset(self, asset_id: int) -> tuple[str, str]:
        """(version, arch) of a release asset id."""
        index, arch_index = divmod(asset_id, 1000)
        if not 1 <= index <= len(tarballs.VERSIONS) or arch_index >= len(tarballs.ARCHES):
            raise ApiError(404, "Not Found")
        return tarballs.VERSIONS[index - 1], tarballs.ARCHES[arch_index]
