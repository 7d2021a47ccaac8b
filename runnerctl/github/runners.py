"""Self-hosted runner operations at repo, org and enterprise scope.

Registration and remove tokens are valid for an hour and are not tied to one runner, so
they go through the shared cache: every worker on the host reuses the one minted for
its scope until it nears expiry. Lists are conditional on their ETag, so polling an
unchanged list costs nothing against the rate limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from pydantic import SecretStr

from runnerctl.errors import Conflict, NotFound, RunnerBusy
from runnerctl.github.caller import Caller
from runnerctl.github.models import JitConfig, RunnerApplication, RunnerInfo, Token, parse_time
from runnerctl.github.shared_tokens import Entry, SharedTokens
from runnerctl.scope import Scope

log = logging.getLogger(__name__)

GROUP_TTL = 3600.0  # runner group ids rarely change; look them up once an hour at most
DEFAULT_GROUP = "default"


class RunnerOperations:
    """The runners API of one GitHub, for any scope."""

    def __init__(
        self, caller: Caller, shared: SharedTokens, clock: Callable[[], float] = time.time
    ) -> None:
        self._caller = caller
        self._shared = shared
        self._clock = clock

    def registration_token(self, scope: Scope, stale: Token | None = None) -> Token:
        """A registration token for ``scope``, shared across processes until near expiry.

        Pass ``stale`` when GitHub refused that token, to get a new one.
        """
        return self._shared_token(scope, "registration-token", stale)

    def remove_token(self, scope: Scope, stale: Token | None = None) -> Token:
        """A remove token for ``scope``, shared like the registration token."""
        return self._shared_token(scope, "remove-token", stale)

    def list_runners(self, scope: Scope, name: str | None = None) -> list[RunnerInfo]:
        """Every runner of ``scope`` (only those named ``name`` when given)."""
        params: dict[str, str | int] = {"per_page": 100}
        if name is not None:
            params["name"] = name
        runners: list[RunnerInfo] = []
        for reply in self._caller.pages(scope, f"{scope.api_prefix}/actions/runners", params):
            runners.extend(RunnerInfo.from_api(item) for item in reply.body.get("runners") or ())
        return runners

    def get_runner(self, scope: Scope, runner_id: int) -> RunnerInfo | None:
        """The runner with ``runner_id``, or None when GitHub no longer has it."""
        path = f"{scope.api_prefix}/actions/runners/{runner_id}"
        reply = self._caller.call(scope, "GET", path, allow=(404,))
        return None if reply.status == 404 else RunnerInfo.from_api(reply.body)

    def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        """Deregister a runner; False when it was already gone, RunnerBusy during a job."""
        path = f"{scope.api_prefix}/actions/runners/{runner_id}"
        reply = self._caller.call(scope, "DELETE", path, allow=(404, 422))
        if reply.status == 422:
            raise RunnerBusy(f"{scope}: runner {runner_id} is running a job; wait for it to end")
        if reply.status == 404:
            return False
        log.info("deleted: runner %d of %s", runner_id, scope)
        return True

    def jit_config(
        self,
        scope: Scope,
        name: str,
        labels: Sequence[str],
        runner_group: str = "Default",
        work_folder: str = "_work",
    ) -> JitConfig:
        """Create a just-in-time runner; raises Conflict when ``name`` is taken."""
        body = {
            "name": name,
            "runner_group_id": self.runner_group_id(scope, runner_group),
            "labels": list(labels),
            "work_folder": work_folder,
        }
        path = f"{scope.api_prefix}/actions/runners/generate-jitconfig"
        reply = self._caller.call(scope, "POST", path, json=body, allow=(409,))
        if reply.status == 409:
            raise Conflict(
                f"{scope}: a runner named {name} already exists; remove it or choose another name"
            )
        config = JitConfig.from_api(reply.body)
        log.info("registered: %s as runner %d of %s (jit)", name, config.runner.id, scope)
        return config

    def runner_group_id(self, scope: Scope, group: str) -> int:
        """The id of runner group ``group`` (case-insensitive, as the runner matches it)."""
        if scope.kind == "repo":
            if group.lower() != DEFAULT_GROUP:
                raise NotFound(
                    f"{scope}: repositories have no runner groups; use runner_group: Default"
                )
            return 1
        entry = self._shared.fetch(
            f"runner-group {scope} {group.lower()}", lambda: self._find_group(scope, group)
        )
        return int(entry.value)

    def runner_downloads(self, scope: Scope) -> list[RunnerApplication]:
        """The runner builds GitHub offers ``scope`` (the latest version only)."""
        path = f"{scope.api_prefix}/actions/runners/downloads"
        reply = self._caller.call(scope, "GET", path, conditional=True)
        return [RunnerApplication.from_api(item) for item in reply.body or ()]

    def runner_labels(self, scope: Scope, runner_id: int) -> list[str]:
        """The names of every label on a runner."""
        reply = self._caller.call(scope, "GET", self._labels_path(scope, runner_id))
        return _label_names(reply.body)

    def add_labels(self, scope: Scope, runner_id: int, labels: Sequence[str]) -> list[str]:
        """Add custom labels; returns every label the runner now has."""
        path = self._labels_path(scope, runner_id)
        reply = self._caller.call(scope, "POST", path, json={"labels": list(labels)})
        return _label_names(reply.body)

    def set_labels(self, scope: Scope, runner_id: int, labels: Sequence[str]) -> list[str]:
        """Replace every custom label (``[]`` clears them); returns the runner's labels."""
        path = self._labels_path(scope, runner_id)
        reply = self._caller.call(scope, "PUT", path, json={"labels": list(labels)})
        return _label_names(reply.body)

    def remove_label(self, scope: Scope, runner_id: int, label: str) -> list[str] | None:
        """Remove one custom label; an absent label counts as removed (returns None)."""
        path = f"{self._labels_path(scope, runner_id)}/{label}"
        reply = self._caller.call(scope, "DELETE", path, allow=(404,))
        return None if reply.status == 404 else _label_names(reply.body)

    def clear_labels(self, scope: Scope, runner_id: int) -> list[str]:
        """Remove every custom label; returns the read-only labels left."""
        reply = self._caller.call(scope, "DELETE", self._labels_path(scope, runner_id))
        return _label_names(reply.body)

    def _shared_token(self, scope: Scope, kind: str, stale: Token | None) -> Token:
        def mint() -> Entry:
            reply = self._caller.call(scope, "POST", f"{scope.api_prefix}/actions/runners/{kind}")
            expires = parse_time(reply.body["expires_at"]).timestamp()
            log.info("minted: %s for %s", kind, scope)
            return Entry(str(reply.body["token"]), expires, self._clock())

        old = stale.value.get_secret_value() if stale is not None else None
        entry = self._shared.fetch(f"{kind} {scope}", mint, stale=old)
        expires_at = datetime.fromtimestamp(entry.expires_at, tz=timezone.utc)
        return Token(value=SecretStr(entry.value), expires_at=expires_at)

    def _find_group(self, scope: Scope, group: str) -> Entry:
        path = f"{scope.api_prefix}/actions/runner-groups"
        for reply in self._caller.pages(scope, path, {"per_page": 100}):
            for item in reply.body.get("runner_groups") or ():
                if str(item.get("name", "")).lower() == group.lower():
                    now = self._clock()
                    return Entry(str(item["id"]), now + GROUP_TTL, now)
        raise NotFound(f"{scope}: no runner group named {group}; create it or fix runner_group")

    @staticmethod
    def _labels_path(scope: Scope, runner_id: int) -> str:
        return f"{scope.api_prefix}/actions/runners/{runner_id}/labels"


def _label_names(body: object) -> list[str]:
    labels = body.get("labels") if isinstance(body, dict) else None
    return [str(label["name"]) for label in labels or ()]
