"""The double's model: the app, its installation, tokens, runners and jobs.

Everything lives in one ``World`` guarded by one lock. Long-polls wait on a condition
per runner built on that same lock, so a waiting poll holds no thread busy and a job
enqueue wakes exactly the runners that may take it. Nothing here speaks HTTP; the
handlers in ``rest``, ``protocol`` and ``control`` translate requests into calls here
and raise ``ApiError`` for GitHub-shaped refusals.
"""

from __future__ import annotations

import itertools
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from runnerctl.scope import Scope

DOCS_URL = "https://docs.github.com/rest"

#: Labels a runner gets from its machine; everything else a registration asks for is custom.
READ_ONLY_LABELS = frozenset({"self-hosted", "linux", "x64", "arm64", "arm"})

DEFAULT_PERMISSIONS = {
    "administration": "write",
    "organization_self_hosted_runners": "write",
    "metadata": "read",
}


class ApiError(Exception):
    """A refusal the server answers with ``status`` and a GitHub-shaped JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        errors: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body GitHub sends with such a refusal."""
        body: dict[str, Any] = {"message": self.message, "documentation_url": DOCS_URL}
        if self.errors is not None:
            body["errors"] = self.errors
        else:
            body["status"] = str(self.status)
        return body


def scope_of(kind: str, target: str) -> Scope:
    """A Scope with GitHub's case-insensitive names folded, so equal names compare equal."""
    if kind not in ("repo", "org", "enterprise"):
        raise ValueError(f"unknown scope kind {kind!r}: use repo, org or enterprise")
    return Scope(kind, target.lower())  # type: ignore[arg-type]


def parse_scope(text: str) -> Scope:
    """``repo:owner/name``, ``org:name`` or ``enterprise:slug`` as a Scope."""
    kind, _, target = text.partition(":")
    if not target:
        raise ValueError(f"scope {text!r} is not kind:target (e.g. repo:octo/app)")
    return scope_of(kind, target)


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Random characters for tokens and secrets."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def iso(epoch: float) -> str:
    """An ISO 8601 UTC timestamp as GitHub writes them."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass
class Settings:
    """Knobs a test may turn at any time (``Sandbox.configure`` / ``/_sandbox/settings``)."""

    offline_after: float = 5.0
    poll_seconds: float = 1.0
    token_lifetime: float = 3600.0
    registration_token_lifetime: float = 3600.0
    rate_limit: int = 5000
    anonymous_rate_limit: int = 60
    rate_limit_status: int = 403
    deprecated_versions: set[str] = field(default_factory=set)


@dataclass
class Installation:
    """The app's installation; ``permissions`` is what its tokens may do."""

    id: int
    account: str
    permissions: dict[str, str]


@dataclass
class IssuedToken:
    """A token the server handed out: installation, registration, remove or service."""

    value: str
    kind: str
    expires_at: float
    scope: Scope | None = None
    installation_id: int = 0
    permissions: dict[str, str] = field(default_factory=dict)


@dataclass
class Label:
    id: int
    name: str
    type: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type}


@dataclass
class Job:
    id: int
    labels: list[str]
    duration: float
    scope: Scope | None
    name: str
    status: str = "queued"
    runner_id: int | None = None
    runner_name: str | None = None
    result: str | None = None
    # The runner confirmed it runs the job (a busy poll or its completion): "running"
    # alone only says the job was handed out.
    started: bool = False
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "labels": list(self.labels),
            "duration": self.duration,
            "scope": f"{self.scope.kind}:{self.scope.target}" if self.scope else None,
            "status": self.status,
            "runner": self.runner_name,
            "runner_id": self.runner_id,
            "result": self.result,
            "started": self.started,
        }


@dataclass
class Runner:
    """One registration; its session fields say whether a listener is connected."""

    id: int
    name: str
    scope: Scope
    labels: list[Label]
    secret: str
    wake: threading.Condition
    group_id: int = 1
    ephemeral: bool = False
    jit: bool = False
    disable_update: bool = False
    os: str = "unknown"
    version: str | None = None
    session_id: str | None = None
    last_seen: float = 0.0
    polls_in_flight: int = 0
    woken: bool = False
    job_id: int | None = None
    messages: deque[dict[str, Any]] = field(default_factory=deque)

    def online(self, now: float, offline_after: float) -> bool:
        if self.session_id is None:
            return False
        return self.polls_in_flight > 0 or now - self.last_seen <= offline_after

    def has_labels(self, wanted: list[str]) -> bool:
        mine = {label.name.lower() for label in self.labels}
        return all(name.lower() in mine for name in wanted)

    def as_json(self, now: float, offline_after: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "os": self.os,
            "status": "online" if self.online(now, offline_after) else "offline",
            "busy": self.job_id is not None,
            "ephemeral": self.ephemeral,
            "runner_group_id": self.group_id,
            "version": self.version,
            "labels": [label.as_json() for label in self.labels],
        }


class World:
    """All of the double's state, behind ``lock``."""

    def __init__(
        self,
        repos: list[str],
        orgs: list[str],
        enterprises: list[str],
        app_id: int,
        client_id: str,
        installation_id: int,
        pat: str,
    ) -> None:
        self.lock = threading.RLock()
        # Notified whenever a job changes status, for Sandbox.wait_for_job.
        self.job_changed = threading.Condition(self.lock)
        self.settings = Settings()
        self.repos = [repo.lower() for repo in repos]
        self.orgs = [org.lower() for org in orgs]
        self.enterprises = [slug.lower() for slug in enterprises]
        self.app_id = app_id
        self.client_id = client_id
        self.pat = pat
        account = (orgs or [repo.split("/")[0] for repo in repos] or ["octo-org"])[0]
        self.installation = Installation(installation_id, account, dict(DEFAULT_PERMISSIONS))
        self.created_at = time.time()
        self.tokens: dict[str, IssuedToken] = {}
        self.agent_secrets: dict[str, int] = {}
        self.runners: dict[int, Runner] = {}
        self.jobs: dict[int, Job] = {}
        # The queued jobs in arrival order, so a poll never scans finished ones.
        self.queued: dict[int, Job] = {}
        self.sessions: dict[str, int] = {}
        self._runner_ids = itertools.count(1)
        self._label_ids = itertools.count(1)
        self._job_ids = itertools.count(1)

    # -- where the app is installed --------------------------------------------------

    def everywhere(self) -> bool:
        """With no repos and no orgs given, every repo and org exists and has the app."""
        return not self.repos and not self.orgs

    def accounts(self) -> set[str]:
        return set(self.orgs) | {repo.split("/")[0] for repo in self.repos}

    def scope_exists(self, scope: Scope) -> bool:
        target = scope.target.lower()
        if scope.kind == "enterprise":
            return not self.enterprises or target in self.enterprises
        if self.everywhere():
            return True
        if scope.kind == "org":
            return target in self.accounts()
        return target in self.repos or target.split("/")[0] in self.orgs

    def installed_on(self, scope: Scope) -> bool:
        """Whether the installation reaches ``scope`` (never an enterprise's runners)."""
        return scope.kind != "enterprise" and self.scope_exists(scope)

    def account_installed(self, login: str) -> bool:
        return self.everywhere() or login.lower() in self.accounts()

    # -- tokens --------------------------------------------------------------------------

    def issue(self, kind: str, lifetime: float, **fields: Any) -> IssuedToken:
        """Hand out a fresh token of ``kind`` valid for ``lifetime`` seconds."""
        if kind == "installation":
            # Not a fixed length on purpose: GitHub's newer ghs_ tokens vary.
            value = "ghs_" + random_text(36 + secrets.randbelow(40))
        elif kind.startswith("service"):
            value = "svc_" + random_text(40)
        else:
            value = random_text(29, string.ascii_uppercase + string.digits)
        token = IssuedToken(value, kind, time.time() + lifetime, **fields)
        self.tokens[value] = token
        return token

    def valid_token(self, value: str, kind: str) -> IssuedToken | None:
        token = self.tokens.get(value)
        if token is None or token.kind != kind:
            return None
        if token.expires_at <= time.time():
            del self.tokens[value]
            return None
        return token

    # -- runners -------------------------------------------------------------------------

    def make_labels(self, names: list[str], all_read_only: bool = False) -> list[Label]:
        labels: list[Label] = []
        for name in names:
            if any(label.name.lower() == name.lower() for label in labels):
                continue
            read_only = all_read_only or name.lower() in READ_ONLY_LABELS
            labels.append(
                Label(next(self._label_ids), name, "read-only" if read_only else "custom")
            )
        return labels

    def custom_label(self, name: str) -> Label:
        return Label(next(self._label_ids), name, "custom")

    def add_runner(self, scope: Scope, name: str, labels: list[Label], **fields: Any) -> Runner:
        secret = random_text(48)
        runner = Runner(
            next(self._runner_ids),
            name,
            scope,
            labels,
            secret,
            threading.Condition(self.lock),
            **fields,
        )
        self.runners[runner.id] = runner
        self.agent_secrets[secret] = runner.id
        return runner

    def find_runner(self, scope: Scope, name: str) -> Runner | None:
        for runner in self.runners.values():
            if runner.scope == scope and runner.name.lower() == name.lower():
                return runner
        return None

    def runners_in(self, scope: Scope) -> list[Runner]:
        return sorted(
            (runner for runner in self.runners.values() if runner.scope == scope),
            key=lambda runner: runner.id,
        )

    def runner_in(self, scope: Scope, runner_id: int) -> Runner:
        runner = self.runners.get(runner_id)
        if runner is None or runner.scope != scope:
            raise ApiError(404, "Not Found")
        return runner

    def new_job_id(self) -> int:
        return next(self._job_ids)
