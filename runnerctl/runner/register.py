"""Registering a runner: the configure step (token mode) or a JIT config.

Token mode runs the runner's own ``config.sh`` unattended, the registration token
reaching it only as ``ACTIONS_RUNNER_INPUT_TOKEN``. It always passes ``--replace`` (a
slot owns its name; a leftover registration of the same name is taken over rather than
refused) and ``--disableupdate`` (runnerctl rolls versions itself, between jobs).

JIT mode asks GitHub for a just-in-time config; the listener receives it at start as
``ACTIONS_RUNNER_INPUT_JITCONFIG``. A name still taken by a previous JIT runner of this
slot (one that died before its job) is deleted and the request repeated once.

Either way, stale local files go first: an existing ``.runner`` makes configure refuse
("already configured"), and retrying that refusal would loop forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from runnerctl.distribution import host_arch
from runnerctl.errors import Conflict, RunnerError
from runnerctl.runner import configsh
from runnerctl.runner.environment import TOKEN_INPUT, Account
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

#: What a registration leaves in the runner folder (and the runner's migrated copies).
REGISTRATION_FILES = (
    ".runner",
    ".credentials",
    ".credentials_rsaparams",
    ".runner_migrated",
    ".credentials_migrated",
)


class TokenLike(Protocol):
    @property
    def value(self) -> SecretStr: ...


class RegistrationSource(Protocol):
    """The GitHub operations registration needs (``runnerctl.github.GitHub``)."""

    def registration_token(self, scope: Scope, stale: Any = None) -> Any: ...

    def jit_config(
        self,
        scope: Scope,
        name: str,
        labels: Any,
        runner_group: str = ...,
        work_folder: str = ...,
    ) -> Any: ...

    def list_runners(self, scope: Scope, name: str | None = None) -> list[Any]: ...

    def delete_runner(self, scope: Scope, runner_id: int) -> bool: ...


@dataclass(frozen=True)
class Registration:
    """A registered runner, ready to start. ``jit_config`` is secret and never shown."""

    mode: Literal["token", "jit"]
    name: str
    runner_id: int | None
    jit_config: SecretStr | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Request:
    """Everything a registration asks for, resolved from the slot."""

    scope: Scope
    url: str
    name: str
    labels: tuple[str, ...]
    work: str
    group: str
    ephemeral: bool


def local_registration(directory: Path) -> dict[str, Any] | None:
    """The runner's ``.runner`` file (UTF-8 with a BOM, camelCase keys), or None."""
    try:
        data = json.loads((directory / ".runner").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def local_runner_id(directory: Path) -> int | None:
    """The GitHub runner id this folder is registered as, or None."""
    data = local_registration(directory)
    agent = data.get("agentId") if data else None
    with contextlib.suppress(TypeError, ValueError):
        return int(agent) if agent is not None else None
    return None


def clear_local(directory: Path, env: Mapping[str, str], account: Account | None) -> None:
    """Forget a local registration: ``config.sh remove --local``, then make sure."""
    present = [name for name in REGISTRATION_FILES if (directory / name).exists()]
    if not present:
        return
    if (directory / "config.sh").exists():
        result = configsh.run(directory, ["remove", "--local"], dict(env), account)
        if not result.ok:
            log.warning("config.sh remove --local failed: %s (%s)", directory, result.reason())
    for name in REGISTRATION_FILES:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    log.info("cleared: stale registration files in %s (%s)", directory, ", ".join(present))


def configure(
    directory: Path,
    request: Request,
    github: RegistrationSource,
    env: Mapping[str, str],
    account: Account | None,
) -> Registration:
    """Token mode: run ``config.sh`` unattended; retry once with a fresh token."""
    token = github.registration_token(request.scope)
    result = _configure_with(directory, request, token, env, account)
    if not result.ok and _token_refused(result.output):
        log.info("registration token refused: %s; fetching a new one", request.name)
        token = github.registration_token(request.scope, stale=token)
        result = _configure_with(directory, request, token, env, account)
    if not result.ok:
        raise RunnerError(f"{request.name}: config.sh failed: {result.reason()}")
    runner_id = local_runner_id(directory)
    log.info("registered: %s as runner %s of %s (token)", request.name, runner_id, request.scope)
    return Registration("token", request.name, runner_id)


def jit(directory: Path, request: Request, github: RegistrationSource) -> Registration:
    """JIT mode: a just-in-time config from GitHub, freeing the name once if taken."""
    try:
        config = _jit_config(request, github)
    except Conflict:
        _delete_by_name(request, github)
        config = _jit_config(request, github)
    return Registration("jit", request.name, int(config.runner.id), config.encoded)


def configure_args(request: Request) -> list[str]:
    """The configure step's arguments: names and flags only, never a secret."""
    args = ["--unattended", "--url", request.url, "--name", request.name]
    if request.labels:
        args += ["--labels", ",".join(request.labels)]
    args += ["--work", request.work, "--runnergroup", request.group]
    if request.ephemeral:
        args.append("--ephemeral")
    return [*args, "--replace", "--disableupdate"]


def _configure_with(
    directory: Path,
    request: Request,
    token: TokenLike,
    env: Mapping[str, str],
    account: Account | None,
) -> configsh.ScriptResult:
    secret_env = {**env, TOKEN_INPUT: token.value.get_secret_value()}
    return configsh.run(directory, configure_args(request), secret_env, account)


def _token_refused(output: str) -> bool:
    return "NotFound" in output and "runner-registration" in output


def jit_labels(custom: tuple[str, ...], arch: str | None = None) -> list[str]:
    """The labels a configured runner would carry: the defaults, then the slot's own.

    The configure step adds ``self-hosted``, ``Linux`` and the architecture by itself;
    a JIT request gets exactly the labels it sends, so it sends the same full set.
    """
    machine = _ARCH_LABELS.get(arch or host_arch(), "X64")
    labels = ["self-hosted", "Linux", machine]
    known = {label.lower() for label in labels}
    return labels + [label for label in custom if label.lower() not in known]


_ARCH_LABELS = {"x64": "X64", "arm64": "ARM64", "arm": "ARM"}


def _jit_config(request: Request, github: RegistrationSource) -> Any:
    return github.jit_config(
        request.scope,
        request.name,
        jit_labels(request.labels),
        runner_group=request.group,
        work_folder=request.work,
    )


def _delete_by_name(request: Request, github: RegistrationSource) -> None:
    """Delete the leftover registrations named like this slot (RunnerBusy propagates)."""
    for runner in github.list_runners(request.scope, name=request.name):
        if runner.name == request.name:
            log.info("replacing: %s (leftover runner %s)", request.name, runner.id)
            github.delete_runner(request.scope, int(runner.id))
