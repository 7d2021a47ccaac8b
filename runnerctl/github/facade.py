"""``GitHub``: the one object the rest of runnerctl uses to talk to GitHub.

Built from the ``github`` settings and the state folder, it picks App or token auth,
shares minted tokens with every other runnerctl process through ``state_dir``, and
exposes the runner operations, runner downloads and release lookups.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

from runnerctl.errors import AuthError
from runnerctl.github.auth import (
    ENTERPRISE_REFUSAL,
    AppAuth,
    Credentials,
    NoCredentials,
    TokenAuth,
    load_private_key,
)
from runnerctl.github.caller import Caller
from runnerctl.github.client import Policy, Transport
from runnerctl.github.models import Release
from runnerctl.github.releases import Releases
from runnerctl.github.runners import RunnerOperations
from runnerctl.github.shared_tokens import SharedTokens
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

DEFAULT_RELEASES_PATH = "/repos/actions/runner/releases"


class GitHubSettingsLike(Protocol):
    """What ``from_settings`` reads (``runnerctl.config.GitHubSettings`` has all of it)."""

    @property
    def api_url(self) -> str: ...
    @property
    def releases_url(self) -> str | None: ...
    @property
    def app_id(self) -> str | int | None: ...
    @property
    def installation_id(self) -> int | None: ...
    @property
    def private_key_file(self) -> Path | str | None: ...
    @property
    def private_key(self) -> SecretStr | None: ...
    @property
    def token(self) -> SecretStr | None: ...
    @property
    def auth_method(self) -> Literal["app", "token", "none"]: ...


class GitHub(RunnerOperations):
    """GitHub's REST API for runnerctl: runner operations, downloads and releases."""

    def __init__(
        self,
        transport: Transport,
        credentials: Credentials,
        shared: SharedTokens,
        releases_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(Caller(transport, credentials), shared, clock)
        self.transport = transport
        self.credentials = credentials
        self._releases = Releases(
            transport, credentials, releases_url or transport.url(DEFAULT_RELEASES_PATH)
        )

    @classmethod
    def from_settings(
        cls,
        settings: GitHubSettingsLike,
        state_dir: Path | str | None,
        policy: Policy | None = None,
    ) -> GitHub:
        """A client for ``settings``; tokens are shared through ``state_dir/github``."""
        transport = Transport(settings.api_url, policy)
        shared = SharedTokens(Path(state_dir) / "github" if state_dir is not None else None)
        credentials = _credentials(settings, transport, shared)
        log.debug("github: %s auth against %s", credentials.method, transport.api_url)
        return cls(transport, credentials, shared, settings.releases_url)

    @property
    def calls(self) -> int:
        """REST calls this process made that count against the rate limit."""
        return self.transport.calls

    @property
    def rate_remaining(self) -> int | None:
        """Requests left in the current rate-limit window, as GitHub last said."""
        return self.transport.rate_remaining

    @property
    def not_modified(self) -> int:
        """Conditional requests GitHub answered 304 (free against the rate limit)."""
        return self.transport.not_modified

    @property
    def auth_method(self) -> str:
        return self.credentials.method

    def check_scope(self, scope: Scope) -> None:
        """Refuse, before any call, a scope these credentials can never manage."""
        if scope.kind == "enterprise" and self.credentials.method == "app":
            raise AuthError(ENTERPRISE_REFUSAL.format(target=scope.target))
        if self.credentials.method == "none":
            self.credentials.authorization(scope)  # raises with the explanation

    def release(self, tag: str | None = None) -> Release:
        """The actions/runner release ``tag`` (``v2.336.0``), or the latest when None."""
        return self._releases.release(tag)

    def close(self) -> None:
        self.transport.session.close()

    def __repr__(self) -> str:
        return f"GitHub({self.transport.api_url!r}, auth={self.credentials.method})"


def _credentials(
    settings: GitHubSettingsLike, transport: Transport, shared: SharedTokens
) -> Credentials:
    method = settings.auth_method
    if method == "token" and settings.token is not None:
        return TokenAuth(settings.token.get_secret_value())
    if method == "app" and settings.app_id is not None:
        pem = settings.private_key.get_secret_value() if settings.private_key else None
        key_file = Path(settings.private_key_file) if settings.private_key_file else None
        key = load_private_key(pem, key_file)
        installation = int(settings.installation_id) if settings.installation_id else None
        return AppAuth(str(settings.app_id), key, transport, shared, installation)
    return NoCredentials()
