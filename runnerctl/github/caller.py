"""Scope-aware REST calls: credentials, one refresh on 401, and errors users can act on.

Every runner operation goes through ``Caller.call``. It asks the credentials for the
header that fits the scope, retries once with a fresh installation token when GitHub
answers 401 (a token can expire or be revoked between two calls), and turns the status
codes that retrying cannot fix into the ``GitHubError`` children, each message naming
the scope, who asked, and what to change.
"""

from __future__ import annotations

import logging
from typing import Any

from runnerctl.errors import AuthError, Conflict, GitHubError, NotFound, PermissionDenied
from runnerctl.github.auth import Credentials
from runnerctl.github.client import Reply, Transport
from runnerctl.scope import APP_PERMISSION, Scope

log = logging.getLogger(__name__)

#: What a token needs at each scope (classic scope, or the fine-grained permission).
TOKEN_PERMISSION = {
    "repo": "the repo scope (classic) or administration: write (fine-grained)",
    "org": "the admin:org scope (classic) or organization_self_hosted_runners: write",
    "enterprise": "the manage_runners:enterprise scope",
}


class Caller:
    """Sends calls about a scope with the right credentials and maps failures."""

    def __init__(self, transport: Transport, credentials: Credentials) -> None:
        self.transport = transport
        self.credentials = credentials

    def call(
        self,
        scope: Scope,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        conditional: bool = False,
        allow: tuple[int, ...] = (),
    ) -> Reply:
        """The reply to ``method path`` about ``scope``; statuses in ``allow`` are returned."""
        authorization = self.credentials.authorization(scope)
        reply = self.transport.request(method, path, authorization, json, params, conditional)
        if reply.status == 401:
            log.info("auth: 401 on %s %s, refreshing credentials once", method, path)
            authorization = self.credentials.authorization(scope, stale=authorization)
            reply = self.transport.request(method, path, authorization, json, params, conditional)
        if reply.status >= 400 and reply.status not in allow:
            raise self.failure(scope, reply)
        return reply

    def pages(self, scope: Scope, path: str, params: dict[str, Any]) -> list[Reply]:
        """Every page of a list about ``scope`` (each conditional on its ETag)."""
        authorization = self.credentials.authorization(scope)
        replies = list(self.transport.pages(path, authorization, params))
        if replies[-1].status == 401:
            # Walk again from the first page with a fresh token: a list is cheap to redo,
            # and pages from before the refusal might have shifted since.
            authorization = self.credentials.authorization(scope, stale=authorization)
            replies = list(self.transport.pages(path, authorization, params))
        if replies[-1].status >= 400:
            raise self.failure(scope, replies[-1])
        return replies

    def failure(self, scope: Scope, reply: Reply) -> GitHubError:
        """The error for a final failed reply about ``scope``."""
        who = self.credentials.describe(scope)
        detail = reply.message or f"HTTP {reply.status}"
        if reply.status == 401:
            return AuthError(f"{scope}: GitHub refused the credentials of {who} ({detail})")
        if reply.status == 403:
            return PermissionDenied(
                f"{scope}: {who} lacks {self._permission(scope)} ({detail}); {self._grant()}"
            )
        if reply.status == 404:
            return NotFound(
                f"{scope}: not found, or {who} cannot see it ({detail}); "
                f"check the name and that it has {self._permission(scope)}"
            )
        if reply.status == 409:
            return Conflict(f"{scope}: {detail}")
        return GitHubError(f"{scope}: GitHub answered {reply.status} ({detail})")

    def _grant(self) -> str:
        if self.credentials.method == "app":
            return "grant it in the App's settings, then approve it on the installation"
        return "use a token that has it"

    def _permission(self, scope: Scope) -> str:
        if self.credentials.method == "app":
            return f"the App permission {APP_PERMISSION[scope.kind]}"
        return TOKEN_PERMISSION[scope.kind]
