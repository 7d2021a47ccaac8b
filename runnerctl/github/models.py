"""The values the GitHub client hands out: runners, tokens, JIT configs, downloads, releases.

Secrets (registration tokens, JIT configs, download tokens) are ``SecretStr``, so a
``repr`` or a log line of any model shows ``**********`` instead of the value.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class RunnerInfo(_Frozen):
    """A self-hosted runner as GitHub lists it."""

    id: int
    name: str
    status: str
    busy: bool
    labels: tuple[str, ...] = ()
    ephemeral: bool = False
    version: str | None = None
    os: str = ""
    runner_group_id: int | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> RunnerInfo:
        labels = tuple(str(label["name"]) for label in body.get("labels") or ())
        return cls(
            id=body["id"],
            name=body["name"],
            status=str(body.get("status", "")),
            busy=bool(body.get("busy", False)),
            labels=labels,
            ephemeral=bool(body.get("ephemeral", False)),
            version=body.get("version"),
            os=str(body.get("os", "")),
            runner_group_id=body.get("runner_group_id"),
        )


class Token(_Frozen):
    """A short-lived token (registration, remove or installation) and when it expires."""

    value: SecretStr
    expires_at: datetime

    def seconds_left(self, now: float) -> float:
        return self.expires_at.timestamp() - now

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Token:
        return cls(value=SecretStr(body["token"]), expires_at=parse_time(body["expires_at"]))


class JitConfig(_Frozen):
    """A just-in-time runner: its registration and the single-use config to start it."""

    runner: RunnerInfo
    encoded: SecretStr

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> JitConfig:
        return cls(
            runner=RunnerInfo.from_api(body["runner"]),
            encoded=SecretStr(body["encoded_jit_config"]),
        )


class RunnerApplication(_Frozen):
    """One entry of a scope's runner downloads list (the latest runner version)."""

    os: str
    architecture: str
    download_url: str
    filename: str
    sha256_checksum: str | None = None
    temp_download_token: SecretStr | None = None

    @property
    def version(self) -> str:
        """The version in the file name, e.g. ``2.336.0``; empty when it has none."""
        found = re.search(r"-(\d+\.\d+\.\d+)\.(?:tar\.gz|zip)$", self.filename)
        return found.group(1) if found else ""

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> RunnerApplication:
        token = body.get("temp_download_token")
        return cls(
            os=body["os"],
            architecture=body["architecture"],
            download_url=body["download_url"],
            filename=body["filename"],
            sha256_checksum=body.get("sha256_checksum"),
            temp_download_token=SecretStr(token) if token else None,
        )


class Asset(_Frozen):
    """A file attached to a release."""

    name: str
    browser_download_url: str
    url: str = ""
    id: int = 0
    size: int = 0
    digest: str | None = None

    @property
    def sha256(self) -> str | None:
        """The hex SHA-256 from ``digest`` (``sha256:<hex>``), if GitHub published one."""
        if self.digest and self.digest.startswith("sha256:"):
            return self.digest.removeprefix("sha256:").lower()
        return None


class Release(_Frozen):
    """An actions/runner release."""

    tag_name: str
    name: str = ""
    body: str = ""
    draft: bool = False
    prerelease: bool = False
    published_at: str | None = None
    assets: tuple[Asset, ...] = ()

    @property
    def version(self) -> str:
        return self.tag_name.removeprefix("v")

    def asset(self, name: str) -> Asset | None:
        return next((asset for asset in self.assets if asset.name == name), None)

    def checksum_marker(self, platform: str) -> str | None:
        """The SHA-256 the release notes carry for ``platform`` (e.g. ``linux-x64``)."""
        pattern = rf"<!--\s*BEGIN SHA {re.escape(platform)}\s*-->\s*([0-9a-fA-F]{{64}})"
        found = re.search(pattern, self.body)
        return found.group(1).lower() if found else None

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Release:
        return cls(
            tag_name=body["tag_name"],
            name=body.get("name") or "",
            body=body.get("body") or "",
            draft=bool(body.get("draft", False)),
            prerelease=bool(body.get("prerelease", False)),
            published_at=body.get("published_at"),
            assets=tuple(Asset.model_validate(asset) for asset in body.get("assets") or ()),
        )


def parse_time(text: str) -> datetime:
    """GitHub's ISO 8601 timestamps (``...Z`` or with an offset), as aware UTC datetimes."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
