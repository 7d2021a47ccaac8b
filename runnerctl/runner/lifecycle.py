"""``Runner``: one slot's runner through its life, the API the supervisor drives.

::

    runner = Runner(slot, github=gh, cache=cache, server_url=settings.server_url)
    version = runner.install()
    process = runner.adopt() or runner.start(runner.register())
    ...wait on process.fileno() and process.events_fileno()...
    runner.remove()

Every registration is a fresh one (stale files are cleared first, ``--replace`` takes
the name over), so a registration deleted on GitHub, a key replaced elsewhere or a
half-written ``.runner`` can never trap a slot in a loop of failing starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from runnerctl.errors import RunnerBusy, RunnerError
from runnerctl.runner import install as installing
from runnerctl.runner import register as registering
from runnerctl.runner import remove as removing
from runnerctl.runner.environment import JITCONFIG_INPUT, Account, build, root_allowed
from runnerctl.runner.logfile import LOG_NAME, rotate
from runnerctl.runner.process import RunnerProcess, running_listener
from runnerctl.runner.register import Registration, Request
from runnerctl.scope import Scope

log = logging.getLogger(__name__)


class SlotLike(Protocol):
    """The settings of one slot (``runnerctl.config.Slot``)."""

    @property
    def name(self) -> str: ...
    @property
    def scope(self) -> Scope: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def version(self) -> str: ...
    @property
    def workdir(self) -> str: ...
    @property
    def ephemeral(self) -> bool: ...
    @property
    def runner_group(self) -> str: ...
    @property
    def registration(self) -> str: ...
    @property
    def env(self) -> dict[str, str]: ...
    @property
    def user(self) -> str | None: ...
    @property
    def directory(self) -> Path: ...


class Runner:
    """Install, register, start, adopt and remove the runner of one slot."""

    def __init__(
        self,
        slot: SlotLike,
        github: Any,
        cache: Any,
        server_url: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``environ`` is the manager's environment the allow-list reads (os.environ)."""
        self.slot = slot
        self.github = github
        self.cache = cache
        self.server_url = server_url
        self.directory = Path(slot.directory).absolute()
        self._environ = environ

    def __repr__(self) -> str:
        return f"<Runner {self.slot.name} in {self.directory}>"

    # -- the steps --------------------------------------------------------------------

    def install(self) -> str:
        """Put the slot's version in its folder (kept when already there); the version."""
        owner = self._run_as() if self.slot.user is not None else None
        try:
            return installing.install(
                self.directory, self.slot.scope, self.slot.version, self.cache, owner
            )
        except PermissionError as error:
            raise RunnerError(
                f"{self.slot.name}: cannot prepare {self.directory} ({error.strerror}); "
                "the manager must run as root to give a runner its own user"
            ) from None

    def register(self) -> Registration:
        """A fresh registration: stale files cleared, then configure (token) or JIT."""
        env = self.environment()
        account = self._run_as()
        self._refuse_root(env, account)
        running = running_listener(self.directory)
        if running is not None:
            raise RunnerError(
                f"{self.slot.name}: a listener already runs in {self.directory} "
                f"(pid {running.pid}); adopt it or stop it first"
            )
        registering.clear_local(self.directory, env, account)
        if self.slot.registration == "jit":
            return registering.jit(self.directory, self._request(), self.github)
        if not (self.directory / "config.sh").exists():
            raise RunnerError(f"{self.directory}: no runner installed here; call install() first")
        return registering.configure(self.directory, self._request(), self.github, env, account)

    def start(self, registration: Registration) -> RunnerProcess:
        """Start the listener for ``registration`` in its own session."""
        env = self.environment()
        account = self._run_as()
        self._refuse_root(env, account)
        if registration.mode == "jit":
            if registration.jit_config is None:
                raise RunnerError(f"{self.slot.name}: JIT registration without a config")
            env[JITCONFIG_INPUT] = registration.jit_config.get_secret_value()
        elif registering.local_registration(self.directory) is None:
            raise RunnerError(
                f"{self.slot.name}: not registered ({self.directory}/.runner is missing); "
                "call register() first"
            )
        rotate(self.directory / LOG_NAME)
        try:
            return RunnerProcess.spawn(self.slot.name, self.directory, env, account)
        except PermissionError as error:
            raise RunnerError(
                f"{self.slot.name}: cannot start the runner as {account.name}: {error} "
                "(running as another user needs the manager to run as root)"
            ) from None
        except FileNotFoundError:
            raise RunnerError(
                f"{self.directory}/bin/Runner.Listener is missing; call install() first"
            ) from None

    def adopt(self) -> RunnerProcess | None:
        """The listener still running in this slot's folder, if any."""
        if not self.directory.is_dir():
            return None
        return RunnerProcess.adopt(self.slot.name, self.directory)

    def remove(self) -> None:
        """Deregister on GitHub and clear local files; ``RunnerBusy`` during a job.

        A listener left running notices its registration is gone and exits on its own;
        the caller may also stop it.
        """
        env = self.environment()
        account = self._run_as()
        process = self.adopt()
        try:
            if process is not None and (process.busy or process.worker() is not None):
                raise RunnerBusy(
                    f"{self.slot.name} is running job {process.job or 'unknown'}; "
                    "remove it after the job ends"
                )
            removing.deregister(
                self.directory,
                self.slot.scope,
                self.slot.name,
                self.github,
                env,
                account,
                listener_running=process is not None,
            )
        finally:
            if process is not None:
                process.close()

    def finish_update(self, timeout: float = installing.UPDATE_TIMEOUT) -> bool:
        """After exit 3/4: wait (inotify, bounded) for the runner's ``update.finished``."""
        return installing.settle_update(self.directory, timeout)

    # -- helpers ----------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment the runner's processes get (see environment.py)."""
        return build(self._run_as(), self.slot.env, self._environ)

    def url(self) -> str:
        """The ``--url`` of this slot's registration."""
        return self.slot.scope.runner_url(self.server_url)

    def _request(self) -> Request:
        slot = self.slot
        return Request(
            scope=slot.scope,
            url=self.url(),
            name=slot.name,
            labels=tuple(slot.labels),
            work=slot.workdir,
            group=slot.runner_group,
            ephemeral=slot.ephemeral,
        )

    def _run_as(self) -> Account:
        try:
            return Account.lookup(self.slot.user)
        except LookupError as error:
            message = f"{self.slot.name}: {error}; create it or change the slot's user"
            raise RunnerError(message) from None

    def _refuse_root(self, env: Mapping[str, str], account: Account) -> None:
        """Jobs as root need the operator's explicit yes, in every registration mode."""
        if account.is_root and not root_allowed(env):
            raise RunnerError(
                f"{self.slot.name}: refusing to run the runner as root; set user: for the "
                "slot, or RUNNER_ALLOW_RUNASROOT=1 in the manager's environment to allow it"
            )
