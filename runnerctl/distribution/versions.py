"""Which runner tarball a version means: its URL, its published SHA-256, its file name.

``latest`` resolves through the runner downloads endpoint of the slot's scope, which
names the current version for each platform. A pinned ``X.Y.Z`` resolves through the
actions/runner release ``vX.Y.Z``: the asset's URL, and the SHA-256 that the release
notes carry between ``<!-- BEGIN SHA linux-<arch> -->`` markers, cross-checked with the
asset's ``digest`` when GitHub supplies one. A version with no published checksum is
refused rather than downloaded unverified.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runnerctl.errors import DistributionError, NotFound
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
_TARBALL_PATTERN = re.compile(
    r"^actions-runner-linux-(?P<arch>x64|arm64|arm)-(?P<version>\d+\.\d+\.\d+)\.tar\.gz$"
)
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")

# platform.machine() spellings of the three Linux architectures the runner ships for.
_MACHINE_TO_ARCH = {
    "x86_64": "x64",
    "amd64": "x64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv8l": "arm",
}


class RunnerApplicationLike(Protocol):
    """One entry of the runner downloads endpoint, as the GitHub client returns it."""

    @property
    def os(self) -> str: ...
    @property
    def architecture(self) -> str: ...
    @property
    def download_url(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def sha256_checksum(self) -> str | None: ...
    @property
    def temp_download_token(self) -> object: ...


class AssetLike(Protocol):
    """One asset of a release."""

    @property
    def name(self) -> str: ...
    @property
    def browser_download_url(self) -> str: ...
    @property
    def digest(self) -> str | None: ...


class ReleaseLike(Protocol):
    """An actions/runner release."""

    @property
    def tag_name(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def assets(self) -> Sequence[AssetLike]: ...


class RunnerSource(Protocol):
    """The part of the GitHub client that resolving versions needs."""

    def runner_downloads(self, scope: Scope) -> Sequence[RunnerApplicationLike]: ...
    def release(self, tag: str | None) -> ReleaseLike: ...


@dataclass(frozen=True)
class RunnerDownload:
    """Where to fetch one runner tarball and what its SHA-256 must be."""

    version: str
    arch: str
    url: str
    sha256: str
    # A short-lived bearer token some download hosts want; never logged or shown.
    token: str | None = field(default=None, repr=False)

    @property
    def filename(self) -> str:
        return tarball_name(self.arch, self.version)


def host_arch(machine: str | None = None) -> str:
    """The runner's name for this machine's architecture: ``x64``, ``arm64`` or ``arm``."""
    machine = machine if machine is not None else platform.machine()
    arch = _MACHINE_TO_ARCH.get(machine.lower())
    if arch is None:
        raise DistributionError(
            f"no actions runner build for machine type {machine!r}; "
            "runners ship for x86_64, aarch64 and armv7l"
        )
    return arch


def tarball_name(arch: str, version: str) -> str:
    """The release asset's file name, e.g. ``actions-runner-linux-x64-2.336.0.tar.gz``."""
    return f"actions-runner-linux-{arch}-{version}.tar.gz"


def parse_tarball_name(name: str) -> tuple[str, str] | None:
    """``(arch, version)`` from a tarball's file name, or None for any other name."""
    match = _TARBALL_PATTERN.match(name)
    if match is None:
        return None
    return match["arch"], match["version"]


def version_key(version: str) -> tuple[int, ...]:
    """Sort key that orders ``2.10.0`` after ``2.9.0``."""
    return tuple(int(part) for part in version.split("."))


def check_version(version: str) -> str:
    """``version`` itself when it is ``latest`` or ``X.Y.Z``; otherwise an error."""
    if version != "latest" and not VERSION_PATTERN.match(version):
        raise DistributionError(
            f"runner version {version!r} is neither 'latest' nor X.Y.Z (e.g. 2.336.0)"
        )
    return version


def normalize_sha256(value: str | None) -> str | None:
    """A lower-case hex digest from ``<hex>`` or ``sha256:<hex>``; None if not SHA-256."""
    if not value:
        return None
    text = value.strip().lower()
    if ":" in text:
        algorithm, _, text = text.partition(":")
        if algorithm != "sha256":
            return None
    return text if _SHA256_PATTERN.match(text) else None


def sha256_from_notes(body: str | None, arch: str) -> str | None:
    """The checksum the release notes carry for ``linux-<arch>``, or None."""
    if not body:
        return None
    key = re.escape(f"linux-{arch}")
    pattern = rf"<!--\s*BEGIN SHA {key}\s*-->\s*([0-9A-Fa-f]{{64}})\s*<!--\s*END SHA {key}\s*-->"
    match = re.search(pattern, body)
    return match.group(1).lower() if match else None


def resolve_latest(source: RunnerSource, scope: Scope, arch: str) -> RunnerDownload:
    """The current runner for ``arch``, as the downloads endpoint of ``scope`` names it."""
    applications = source.runner_downloads(scope)
    app = next(
        (a for a in applications if a.os == "linux" and a.architecture == arch),
        None,
    )
    if app is None:
        raise DistributionError(
            f"the runner downloads list for {scope} has no linux-{arch} build; "
            "pin a version that ships one"
        )
    parsed = parse_tarball_name(app.filename)
    if parsed is None:
        raise DistributionError(
            f"runner download {app.filename!r} for {scope} is not named "
            "actions-runner-linux-<arch>-<X.Y.Z>.tar.gz; cannot tell its version"
        )
    version = parsed[1]
    sha256 = normalize_sha256(app.sha256_checksum)
    if sha256 is None:
        # Older servers omit the checksum here; the release notes still carry it.
        log.info("no checksum in the downloads list for %s; reading release v%s", version, version)
        sha256 = resolve_pinned(source, version, arch).sha256
    return RunnerDownload(
        version=version,
        arch=arch,
        url=app.download_url,
        sha256=sha256,
        token=_secret_text(app.temp_download_token),
    )


def resolve_pinned(source: RunnerSource, version: str, arch: str) -> RunnerDownload:
    """Runner ``version`` for ``arch`` from the actions/runner release ``v<version>``."""
    try:
        release = source.release(f"v{version}")
    except NotFound:
        raise DistributionError(
            f"runner version {version} has no release v{version}; "
            "check the version, or releases_url if you use a mirror"
        ) from None
    name = tarball_name(arch, version)
    asset = next((a for a in release.assets if a.name == name), None)
    if asset is None:
        raise DistributionError(f"release v{version} has no asset {name}")
    from_notes = sha256_from_notes(release.body, arch)
    from_digest = normalize_sha256(asset.digest)
    if from_notes and from_digest and from_notes != from_digest:
        raise DistributionError(
            f"release v{version} publishes two SHA-256 values for {name} "
            f"({from_notes} in its notes, {from_digest} as the asset digest); refusing it"
        )
    sha256 = from_notes or from_digest
    if sha256 is None:
        raise DistributionError(
            f"release v{version} publishes no SHA-256 for {name}; refusing an unverified download"
        )
    return RunnerDownload(version=version, arch=arch, url=asset.browser_download_url, sha256=sha256)


def _secret_text(value: object) -> str | None:
    """The plain text of a token that may be a str, a SecretStr, or absent."""
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)
    text = reveal() if callable(reveal) else value
    return text if isinstance(text, str) and text else None
