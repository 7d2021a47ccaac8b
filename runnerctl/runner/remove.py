"""Deregistering a runner: on GitHub first, then its local registration files.

With its local files and no listener running, the runner's own ``config.sh remove``
does it (a remove token in ``ACTIONS_RUNNER_INPUT_TOKEN``). When the local files are
gone, ``config.sh`` fails, or a listener is still running, the registration is
deleted through the API by id (the ``.runner`` id, else every runner of this name).
GitHub refuses to delete a runner during a job (``RunnerBusy``), so a busy runner is
removed only once its job has ended. A registration that is already gone is fine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from runnerctl.runner import configsh
from runnerctl.runner.environment import TOKEN_INPUT, Account
from runnerctl.runner.register import REGISTRATION_FILES, local_runner_id
from runnerctl.scope import Scope

log = logging.getLogger(__name__)


class RemovalSource(Protocol):
    """The GitHub operations removal needs (``runnerctl.github.GitHub``)."""

    def remove_token(self, scope: Scope, stale: Any = None) -> Any: ...

    def list_runners(self, scope: Scope, name: str | None = None) -> list[Any]: ...

    def delete_runner(self, scope: Scope, runner_id: int) -> bool: ...


def deregister(
    directory: Path,
    scope: Scope,
    name: str,
    github: RemovalSource,
    env: Mapping[str, str],
    account: Account | None,
    listener_running: bool,
) -> None:
    """Remove the registration on GitHub and the local files; tolerate "already gone"."""
    runner_id = local_runner_id(directory)
    removed = False
    if runner_id is not None and not listener_running and (directory / "config.sh").exists():
        removed = _remove_with_script(directory, scope, name, github, env, account)
    if not removed:
        _delete_through_api(scope, name, runner_id, github)
    forget_files(directory)


def forget_files(directory: Path) -> None:
    """Delete the local registration files (nothing else of the folder)."""
    for file_name in REGISTRATION_FILES:
        with contextlib.suppress(FileNotFoundError):
            (directory / file_name).unlink()


def _remove_with_script(
    directory: Path,
    scope: Scope,
    name: str,
    github: RemovalSource,
    env: Mapping[str, str],
    account: Account | None,
) -> bool:
    token = github.remove_token(scope)
    secret_env = {**env, TOKEN_INPUT: token.value.get_secret_value()}
    result = configsh.run(directory, ["remove"], secret_env, account)
    if result.ok:
        log.info("removed: %s (config.sh remove)", name)
        return True
    log.warning("config.sh remove failed: %s (%s); deleting through the API", name, result.reason())
    return False


def _delete_through_api(
    scope: Scope, name: str, runner_id: int | None, github: RemovalSource
) -> None:
    """Delete by id, or every runner with exactly this name; RunnerBusy propagates."""
    if runner_id is not None:
        ids = [runner_id]
    else:
        runners = github.list_runners(scope, name=name)
        ids = [int(runner.id) for runner in runners if runner.name == name]
    if not ids:
        log.info("removed already: %s has no registration on %s", name, scope)
    for number in ids:
        if github.delete_runner(scope, number):
            log.info("removed: %s (runner %s deleted through the API)", name, number)
        else:
            log.info("removed already: %s (runner %s was gone)", name, number)
