"""actions/runner releases, read from a releases API base that may be a mirror.

The base (``releases_url``) defaults to GitHub's ``/repos/actions/runner/releases``. A
credential is sent only when the base lives on the configured API host: a mirror on
another host must never see the installation token or ``GITHUB_TOKEN``.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

from runnerctl.errors import GitHubError, NotFound
from runnerctl.github.auth import Credentials
from runnerctl.github.client import Transport
from runnerctl.github.models import Release

log = logging.getLogger(__name__)


class Releases:
    """Looks up releases; conditional requests make repeated update checks free."""

    def __init__(self, transport: Transport, credentials: Credentials, releases_url: str) -> None:
        self._transport = transport
        self._credentials = credentials
        self.base = releases_url.rstrip("/")

    def release(self, tag: str | None = None) -> Release:
        """The release tagged ``tag`` (e.g. ``v2.336.0``), or the latest when None."""
        path = f"{self.base}/latest" if tag is None else f"{self.base}/tags/{quote(tag)}"
        authorization = self._authorization()
        reply = self._transport.request("GET", path, authorization, conditional=True)
        if reply.status == 401 and authorization is not None:
            authorization = self._credentials.authorization(None, stale=authorization)
            reply = self._transport.request("GET", path, authorization, conditional=True)
        what = "the latest runner release" if tag is None else f"runner release {tag}"
        if reply.status == 404:
            raise NotFound(f"{what} not found at {self.base}: check the version and releases_url")
        if reply.status != 200:
            raise GitHubError(f"{what}: {self.base} answered {reply.status} ({reply.message})")
        return Release.from_api(reply.body)

    def _authorization(self) -> str | None:
        if urlsplit(self.base).netloc != urlsplit(self._transport.api_url).netloc:
            return None
        return self._credentials.authorization(None)
