"""Where a runner registers: a repository, an organization or an enterprise.

One small value type shared by the configuration (to validate), the GitHub client (to
build REST paths) and the runner (to build the ``--url`` its configure step needs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ScopeKind = Literal["repo", "org", "enterprise"]

# GitHub's own rules: owner and org logins are alphanumeric with single inner hyphens;
# repository names also allow dots and underscores.
_LOGIN = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
_REPO = r"[A-Za-z0-9._-]{1,100}"
REPO_PATTERN = re.compile(rf"^{_LOGIN}/{_REPO}$")
LOGIN_PATTERN = re.compile(rf"^{_LOGIN}$")
ENTERPRISE_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")

#: The permission a GitHub App needs to manage runners at each scope.
APP_PERMISSION: dict[ScopeKind, str] = {
    "repo": "administration: write",
    "org": "organization_self_hosted_runners: write",
    "enterprise": "none: GitHub Apps cannot manage enterprise runners; use a token",
}


@dataclass(frozen=True, order=True)
class Scope:
    """A registration target: ``Scope("repo", "octo/app")``, ``Scope("org", "octo")``."""

    kind: ScopeKind
    target: str

    @property
    def api_prefix(self) -> str:
        """The REST path prefix, e.g. ``/repos/octo/app``."""
        if self.kind == "repo":
            return f"/repos/{self.target}"
        if self.kind == "org":
            return f"/orgs/{self.target}"
        return f"/enterprises/{self.target}"

    def runner_url(self, server_url: str) -> str:
        """The web URL the runner's ``--url`` takes."""
        base = server_url.rstrip("/")
        if self.kind == "enterprise":
            return f"{base}/enterprises/{self.target}"
        return f"{base}/{self.target}"

    def __str__(self) -> str:
        return f"{self.kind} {self.target}"
