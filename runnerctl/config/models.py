"""The configuration's models: what each section of runnerctl.yaml may hold.

The field descriptions here are the reference documentation: ``runnerctl.config.docs``
renders them into docs/configuration.md, so a default or a meaning changes in one place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from runnerctl.config.fields import (
    DEFAULT_LABELS,
    AbsolutePath,
    Address,
    AppId,
    Env,
    Labels,
    OptionalAbsolutePath,
    OptionalUrl,
    RunnerGroup,
    Url,
    User,
    Version,
    Workdir,
)
from runnerctl.scope import Scope, ScopeKind

Registration = Literal["jit", "token"]
COUNT_MAX = 1000  # a guard against typos like 10000; no host runs that many runners
GITHUB_SERVER = "https://github.com"
GITHUB_API = "https://api.github.com"
RUNNER_RELEASES = "https://api.github.com/repos/actions/runner/releases"


class Section(BaseModel):
    """A mapping from the file: unknown keys are errors, values are checked on the way in."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunnerSettings(Section):
    """The settings every runner has: the ``defaults`` section, and per-item overrides."""

    labels: Labels = Field(
        DEFAULT_LABELS,
        description="Runner labels, a comma-separated string or a list. An item's labels "
        "replace the defaults' labels; list every label the runner should carry.",
    )
    version: Version = Field(
        "latest",
        description="Runner version: `latest` follows new releases, `X.Y.Z` pins one.",
    )
    workdir: Workdir = Field(
        "_work",
        description="Work folder for jobs, relative to the runner's folder; no `..`.",
    )
    ephemeral: bool = Field(
        True,
        description="Take one job, then register a fresh runner. `false` keeps one "
        "persistent registration.",
    )
    daemonize: bool = Field(
        True,
        description="Keep the runner alive across a restart of the manager; the new "
        "manager adopts it.",
    )
    base_dir: AbsolutePath = Field(
        Path("/opt/runnerctl/runners"),
        description="Absolute folder holding one subfolder per runner (`base_dir/name`).",
    )
    runner_group: RunnerGroup = Field("Default", description="Runner group to register in.")
    registration: Registration | None = Field(
        None,
        description="`jit` (just-in-time config, ephemeral runners only) or `token` "
        "(configure step with a registration token). Unset: `jit` for ephemeral "
        "runners, `token` for persistent ones.",
    )
    env: Env = Field(
        default_factory=dict,
        description="Extra environment for the runner process, `NAME: value`. An item's "
        "env is merged over the defaults' env, key by key.",
    )
    user: User = Field(
        None,
        description="Run the runner as this local user when the manager runs as root.",
    )


RUNNER_SETTING_KEYS = tuple(RunnerSettings.model_fields)


class RunnerItem(RunnerSettings):
    """One entry of ``runners``: a single runner, or a pool of ``count`` runners."""

    # Names stay raw here: the loader checks them with the item's context (prefix + count).
    name: str | None = Field(None, description="Name of a single runner.")
    name_prefix: str | None = Field(
        None,
        description="Name a pool instead: runners `PREFIX-1` … `PREFIX-COUNT`.",
    )
    count: int = Field(
        1, ge=1, le=COUNT_MAX, description="How many runners a `name_prefix` pool has."
    )
    scope: ScopeKind | None = Field(
        None,
        description="`repo`, `org` or `enterprise`. May be left out when exactly one of "
        "`repo`, `org`, `enterprise` is given.",
    )
    repo: str | None = Field(None, description="`owner/repo` for a repository runner.")
    org: str | None = Field(None, description="Organization login for an org runner.")
    enterprise: str | None = Field(None, description="Enterprise slug for an enterprise runner.")

    def overrides(self) -> dict[str, object]:
        """The runner settings this item sets itself."""
        return {
            key: getattr(self, key) for key in RUNNER_SETTING_KEYS if key in self.model_fields_set
        }


class ManagerSettings(Section):
    """The ``manager`` section: how the supervising process behaves."""

    interval: float = Field(10.0, gt=0, description="Seconds between reconcile passes.")
    cache_dir: AbsolutePath = Field(
        Path("/var/cache/runnerctl"), description="Verified runner downloads."
    )
    state_dir: AbsolutePath = Field(
        Path("/run/runnerctl"), description="Runtime state: status.json, shared tokens."
    )
    stop_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds a drain may wait for running jobs on stop (SIGTERM) before "
        "the runners are stopped at once.",
    )
    max_restarts: int = Field(
        5, ge=1, description="Restarts a slot may make within `restart_period` before it backs off."
    )
    restart_period: float = Field(60.0, gt=0, description="Window in seconds for `max_restarts`.")
    keep_versions: int = Field(3, ge=1, description="Runner versions kept in `cache_dir`.")
    metrics_address: Address = Field(
        None, description="`host:port` to serve Prometheus metrics on; unset: no metrics."
    )
    janitor_interval: float = Field(
        300.0, gt=0, description="Seconds between GitHub housekeeping passes (ghost runners)."
    )
    update_check_interval: float = Field(
        3600.0, gt=0, description="Seconds between checks for a new runner release."
    )


class GitHubSection(Section):
    """The ``github`` section of the file: endpoints and App identity, never secrets."""

    api_url: OptionalUrl = Field(
        None,
        description="REST API base. Unset: derived from `server_url` (`https://api.github.com` "
        "for github.com, `https://api.HOST` for `*.ghe.com`, `SERVER_URL/api/v3` for "
        "GitHub Enterprise Server).",
    )
    server_url: Url = Field(GITHUB_SERVER, description="Web URL runners register against.")
    releases_url: Url = Field(
        RUNNER_RELEASES,
        description="Releases API of actions/runner, where runner versions come from; "
        "point it at a mirror if needed.",
    )
    app_id: AppId = Field(None, description="GitHub App id (or client id).")
    installation_id: int | None = Field(
        None, gt=0, description="App installation id; unset: looked up per scope."
    )
    private_key_file: OptionalAbsolutePath = Field(
        None, description="Absolute path of the App's PEM private key."
    )


def derive_api_url(server_url: str) -> str:
    """The REST base GitHub serves for a web URL (github.com, GHE.com, or GHES)."""
    host = (urlsplit(server_url).hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        return GITHUB_API
    if host.endswith(".ghe.com"):
        return f"https://api.{host}"
    return f"{server_url}/api/v3"


class GitHubSettings(BaseModel):
    """Where GitHub is and who runnerctl is to it (file section plus environment)."""

    model_config = ConfigDict(frozen=True)

    api_url: str = GITHUB_API
    server_url: str = GITHUB_SERVER
    releases_url: str = RUNNER_RELEASES
    app_id: str | None = None
    installation_id: int | None = None
    private_key_file: Path | None = None
    private_key: SecretStr | None = None
    token: SecretStr | None = None

    @property
    def auth_method(self) -> Literal["app", "token", "none"]:
        """``token`` when GITHUB_TOKEN is set, ``app`` with complete App credentials."""
        if self.token is not None:
            return "token"
        if self.app_id and (self.private_key is not None or self.private_key_file):
            return "app"
        return "none"


class Slot(BaseModel):
    """One runner the manager keeps alive, with every setting resolved."""

    model_config = ConfigDict(frozen=True)

    name: str
    scope: Scope
    labels: tuple[str, ...]
    version: str
    workdir: str
    ephemeral: bool
    daemonize: bool
    base_dir: Path
    runner_group: str
    registration: Registration
    env: dict[str, str]
    user: str | None

    @property
    def directory(self) -> Path:
        """The runner's own folder."""
        return self.base_dir / self.name

    def fingerprint(self) -> str:
        """A stable hash of every setting; when it changes the runner is replaced."""
        data = self.model_dump(mode="json")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def item_scope(item: RunnerItem) -> Scope:
    """The scope of a validated item (the loader has checked it is complete)."""
    kind: ScopeKind
    if item.scope is not None:
        kind = item.scope
    elif item.repo is not None:
        kind = "repo"
    elif item.org is not None:
        kind = "org"
    else:
        kind = "enterprise"
    target = getattr(item, kind)
    assert isinstance(target, str)
    return Scope(kind, target)


def item_names(item: RunnerItem) -> list[str]:
    """The slot names an item expands to, in order."""
    if item.name_prefix is not None:
        return [f"{item.name_prefix}-{index}" for index in range(1, item.count + 1)]
    assert item.name is not None
    return [item.name]


def resolve(item: RunnerItem, defaults: RunnerSettings) -> list[Slot]:
    """Expand one item over the effective defaults: its own values win, env merges."""
    settings: dict[str, Any] = defaults.model_dump()
    overrides = item.overrides()
    if "env" in overrides:
        overrides["env"] = {**defaults.env, **item.env}
    settings.update(overrides)
    if settings["registration"] is None:
        settings["registration"] = "jit" if settings["ephemeral"] else "token"
    scope = item_scope(item)
    return [Slot(name=name, scope=scope, **settings) for name in item_names(item)]


class Config(BaseModel):
    """A loaded, validated configuration."""

    model_config = ConfigDict(frozen=True)

    source: Path
    defaults: RunnerSettings
    runners: tuple[RunnerItem, ...]
    manager: ManagerSettings
    github: GitHubSettings
    overrides: tuple[str, ...] = Field(
        (), description="Environment variables that changed defaults or manager settings."
    )

    def slots(self) -> list[Slot]:
        """Every runner slot, expanded and resolved, in file order."""
        return [slot for item in self.runners for slot in resolve(item, self.defaults)]
