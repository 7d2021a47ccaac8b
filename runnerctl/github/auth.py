"""Who runnerctl is to GitHub: a GitHub App (JWT, then installation tokens) or a token.

App flow: a short RS256 JWT signed with the App's private key proves the App; with it
runnerctl finds the installation for a scope (unless one is configured) and mints an
installation token, which authorizes the runner calls for an hour. Installation ids and
tokens go through the shared cache, so all workers on the host mint one token per hour.

Enterprise runners cannot be managed by a GitHub App at all; an enterprise scope with
App credentials is refused here with that explanation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from runnerctl.errors import AuthError, GitHubError, NotFound, PermissionDenied
from runnerctl.github.client import Reply, Transport
from runnerctl.github.models import parse_time
from runnerctl.github.shared_tokens import Entry, SharedTokens
from runnerctl.scope import APP_PERMISSION, Scope

log = logging.getLogger(__name__)

JWT_BACKDATE = 60  # seconds; absorbs clock drift between this host and GitHub
JWT_LIFETIME = 540  # seconds; GitHub accepts at most ten minutes
INSTALLATION_TTL = 24 * 3600.0  # how long a discovered installation id is trusted

ENTERPRISE_REFUSAL = (
    "enterprise {target}: GitHub Apps cannot manage enterprise runners; "
    "set GITHUB_TOKEN to a token with the manage_runners:enterprise scope"
)


class Credentials(Protocol):
    """Produces the ``Authorization`` header for calls about a scope."""

    method: str

    def authorization(self, scope: Scope | None, stale: str | None = None) -> str | None:
        """The header value; ``stale`` is one GitHub just refused (401), so replace it."""

    def describe(self, scope: Scope) -> str:
        """Who is asking, for error messages: "GitHub App 123 (installation 45)"."""


class NoCredentials:
    """No credentials configured: only public endpoints (releases) work."""

    method = "none"

    def authorization(self, scope: Scope | None, stale: str | None = None) -> str | None:
        if scope is None:
            return None
        raise AuthError(
            f"{scope}: no GitHub credentials: set GITHUB_APP_ID with a private key, or GITHUB_TOKEN"
        )

    def describe(self, scope: Scope) -> str:
        return "anonymous"


class TokenAuth:
    """A personal access token or any other bearer token (``GITHUB_TOKEN``)."""

    method = "token"

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def authorization(self, scope: Scope | None, stale: str | None = None) -> str | None:
        if stale == self._header:
            raise AuthError(
                "GitHub refused GITHUB_TOKEN (401 Bad credentials): the token is wrong, "
                "expired or revoked; set a valid one"
            )
        return self._header

    def describe(self, scope: Scope) -> str:
        return "GITHUB_TOKEN"

    def __repr__(self) -> str:
        return "TokenAuth(***)"


class AppAuth:
    """A GitHub App: JWTs made locally, installation tokens minted and shared."""

    method = "app"

    def __init__(
        self,
        app_id: str,
        private_key: RSAPrivateKey,
        transport: Transport,
        shared: SharedTokens,
        installation_id: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.installation_id = installation_id
        self._key = private_key
        self._transport = transport
        self._shared = shared
        self._clock = clock
        self._jwt: tuple[str, float] | None = None

    def authorization(self, scope: Scope | None, stale: str | None = None) -> str | None:
        if scope is None:
            if self.installation_id is None:
                return None  # public endpoints need no installation
            return f"Bearer {self._installation_token(self.installation_id, stale)}"
        if scope.kind == "enterprise":
            raise AuthError(ENTERPRISE_REFUSAL.format(target=scope.target))
        installation = self.installation_for(scope)
        try:
            return f"Bearer {self._installation_token(installation, stale)}"
        except NotFound:
            if self.installation_id is not None:
                raise
            # The App was reinstalled since the lookup was cached: look it up again.
            self._shared.forget(_installation_key(scope))
            installation = self.installation_for(scope)
            return f"Bearer {self._installation_token(installation, stale)}"

    def describe(self, scope: Scope) -> str:
        try:
            installation: object = self.installation_for(scope)  # cached by the failed call
        except GitHubError:
            installation = "unknown"
        return f"GitHub App {self.app_id} (installation {installation})"

    def jwt(self) -> str:
        """A JWT for the App itself, reused until a minute before it expires."""
        now = self._clock()
        if self._jwt is not None and self._jwt[1] - now > 60:
            return self._jwt[0]
        issued = int(now) - JWT_BACKDATE
        expires = int(now) + JWT_LIFETIME
        claims = {"iat": issued, "exp": expires, "iss": self.app_id}
        token = jwt.encode(claims, self._key, algorithm="RS256")
        self._jwt = (token, float(expires))
        return token

    def installation_for(self, scope: Scope) -> int:
        """The installation that covers ``scope``: configured, cached, or looked up."""
        if self.installation_id is not None:
            return self.installation_id
        entry = self._shared.fetch(_installation_key(scope), lambda: self._discover(scope))
        return int(entry.value)

    def _discover(self, scope: Scope) -> Entry:
        reply = self._app_call("GET", f"{scope.api_prefix}/installation")
        if reply.status == 404:
            where = "repository" if scope.kind == "repo" else "organization"
            raise NotFound(
                f"the GitHub App {self.app_id} is not installed on {where} {scope.target}: "
                f"install it there with the permission {APP_PERMISSION[scope.kind]}"
            )
        _expect(reply, 200, f"installation lookup for {scope}")
        installation = int(reply.body["id"])
        log.info("auth: %s uses installation %d of app %s", scope, installation, self.app_id)
        now = self._clock()
        return Entry(str(installation), now + INSTALLATION_TTL, now)

    def _installation_token(self, installation: int, stale: str | None) -> str:
        stale_value = stale.removeprefix("Bearer ") if stale else None
        entry = self._shared.fetch(
            f"installation-token {installation}",
            lambda: self._mint_installation_token(installation),
            stale=stale_value,
        )
        return entry.value

    def _mint_installation_token(self, installation: int) -> Entry:
        reply = self._app_call("POST", f"/app/installations/{installation}/access_tokens")
        if reply.status == 404:
            raise NotFound(
                f"GitHub App {self.app_id} has no installation {installation}: check "
                "GITHUB_APP_INSTALLATION_ID, or unset it to discover the installation"
            )
        if reply.status == 403:
            raise PermissionDenied(
                f"GitHub refused a token for installation {installation} of App "
                f"{self.app_id} ({reply.message}): check the installation is not suspended"
            )
        _expect(reply, 201, "installation token")
        expires = parse_time(reply.body["expires_at"]).timestamp()
        log.info("auth: minted installation token for installation %d", installation)
        return Entry(str(reply.body["token"]), expires, self._clock())

    def _app_call(self, method: str, path: str) -> Reply:
        reply = self._transport.request(method, path, f"Bearer {self.jwt()}")
        if reply.status == 401:
            raise AuthError(
                f"GitHub refused the JWT of App {self.app_id} ({reply.message or '401'}): "
                "check GITHUB_APP_ID, that the private key belongs to that App, "
                "and this host's clock"
            )
        return reply

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r})"


def load_private_key(pem: str | None, path: Path | None) -> RSAPrivateKey:
    """The App's RSA key from its PEM text or its file; errors name the file."""
    source = "GITHUB_APP_PRIVATE_KEY"
    if pem is None:
        if path is None:
            raise AuthError(
                "GitHub App private key missing: set private_key_file or GITHUB_APP_PRIVATE_KEY"
            )
        source = str(path)
        try:
            pem = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise AuthError(
                f"cannot read GitHub App private key {path}: {reason}; check the path "
                "and that runnerctl may read it"
            ) from None
    if "\\n" in pem and "\n" not in pem.strip():
        pem = pem.replace("\\n", "\n")  # an environment file often carries it on one line
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuthError(
            f"GitHub App private key {source} is not an unencrypted PEM private key: "
            "download a new key from the App's settings page"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise AuthError(f"GitHub App private key {source} is not an RSA key: GitHub Apps use RSA")
    return key


def _installation_key(scope: Scope) -> str:
    return f"installation-of {scope}"


def _expect(reply: Reply, status: int, what: str) -> None:
    if reply.status != status:
        raise GitHubError(f"GitHub answered {reply.status} to the {what} request: {reply.message}")
