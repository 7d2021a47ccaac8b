"""Test control: the operations behind ``/_sandbox/...`` and the ``Sandbox`` methods."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from runnerctl.sandbox import jobs
from runnerctl.sandbox.faults import Fault
from runnerctl.sandbox.state import ApiError, parse_scope
from runnerctl.sandbox.wire import Context, Handler, Request, Response, Route, route

#: Settings a test may change, with the type each is coerced to.
SETTINGS = {
    "offline_after": float,
    "poll_seconds": float,
    "token_lifetime": float,
    "registration_token_lifetime": float,
    "rate_limit": int,
    "anonymous_rate_limit": int,
    "rate_limit_status": int,
}


class Controls:
    """What a test can do to the double, in-process or over HTTP."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.world = ctx.world

    def enqueue_job(
        self,
        labels: list[str],
        duration: float = 0.0,
        scope: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Queue a job; ``scope`` is ``repo:o/r``, ``org:o`` or ``enterprise:e``."""
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ApiError(422, "labels must be a list of strings", errors=[])
        try:
            parsed = parse_scope(scope) if scope else None
        except ValueError as error:
            raise ApiError(422, str(error), errors=[]) from None
        job = jobs.enqueue(self.world, labels, float(duration), parsed, name)
        with self.world.lock:
            return job.as_json()

    def job(self, job_id: int) -> dict[str, Any]:
        with self.world.lock:
            job = self.world.jobs.get(int(job_id))
            if job is None:
                raise ApiError(404, f"job {job_id} not found")
            return job.as_json()

    def jobs(self) -> list[dict[str, Any]]:
        with self.world.lock:
            return [job.as_json() for job in self.world.jobs.values()]

    def cancel_job(self, job_id: int) -> None:
        jobs.cancel(self.world, int(job_id))

    def wait_for_job(self, job_id: int, status: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until the job reaches ``status``; TimeoutError names what it saw."""
        deadline = time.monotonic() + timeout
        with self.world.lock:
            while True:
                job = self.job(job_id)
                if job["status"] == status:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"job {job_id} is {job['status']}, not {status}, after {timeout}s"
                    )
                self.world.job_changed.wait(remaining)

    def runners(self) -> list[dict[str, Any]]:
        """Every runner in every scope, with its session state."""
        now = time.time()
        with self.world.lock:
            settings = self.world.settings
            result = []
            for runner in sorted(self.world.runners.values(), key=lambda item: item.id):
                entry = runner.as_json(now, settings.offline_after)
                entry.update(
                    scope=f"{runner.scope.kind}:{runner.scope.target}",
                    jit=runner.jit,
                    disable_update=runner.disable_update,
                    session=runner.session_id is not None,
                    polling=runner.polls_in_flight > 0,
                    last_seen=runner.last_seen or None,
                    job=runner.job_id,
                )
                result.append(entry)
            return result

    def force_exit(self, runner_id: int, code: int) -> None:
        """The runner's listener exits with ``code`` at its next poll."""
        jobs.send(self.world, int(runner_id), {"type": "exit", "code": int(code)})

    def request_update(self, runner_id: int, version: str) -> None:
        """Tell a runner to update itself (409 when it was registered with --disableupdate)."""
        jobs.send(self.world, int(runner_id), {"type": "update", "version": str(version)})

    def calls(self) -> list[dict[str, Any]]:
        return self.ctx.calls.calls()

    def clear_calls(self) -> None:
        self.ctx.calls.clear()

    def add_fault(self, **spec: Any) -> None:
        try:
            self.ctx.faults.add(Fault.from_json(spec))
        except ValueError as error:
            raise ApiError(422, str(error), errors=[]) from None

    def clear_faults(self) -> None:
        self.ctx.faults.clear()

    def corrupt(self, version: str) -> None:
        self.ctx.distribution.corrupt(version)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings; a new rate limit also starts every budget afresh."""
        settings = self.world.settings
        with self.world.lock:
            for name, value in changes.items():
                if name in SETTINGS:
                    setattr(settings, name, SETTINGS[name](value))
                elif name == "deprecated_versions":
                    settings.deprecated_versions = {str(version) for version in value}
                elif name == "permissions":
                    self.world.installation.permissions = {str(k): str(v) for k, v in value.items()}
                else:
                    raise ApiError(422, f"unknown setting {name!r}", errors=[])
            if {"rate_limit", "anonymous_rate_limit"} & changes.keys():
                self.ctx.limiter.reset()
            for runner in self.world.runners.values():
                runner.wake.notify_all()
            return self.settings()

    def settings(self) -> dict[str, Any]:
        with self.world.lock:
            settings = self.world.settings
            result: dict[str, Any] = {name: getattr(settings, name) for name in SETTINGS}
            result["deprecated_versions"] = sorted(settings.deprecated_versions)
            result["permissions"] = dict(self.world.installation.permissions)
            return result


def _body(request: Request) -> dict[str, Any]:
    body = request.json(required=False)
    if not isinstance(body, dict):
        raise ApiError(400, "Problems parsing JSON")
    return body


Action = Callable[[Controls, dict[str, Any], "re.Match[str]"], Any]


def _action(action: Action, status: int = 200) -> Handler:
    """A /_sandbox handler: run ``action`` with the JSON body, answer with its result."""

    def handle(ctx: Context, request: Request, match: re.Match[str]) -> Response:
        result = action(Controls(ctx), _body(request), match)
        return Response(status, {} if result is None else result)

    return handle


def _route(method: str, path: str, action: Action, status: int = 200) -> Route:
    return route(method, "/_sandbox" + path, _action(action, status), "control")


_JOB = r"/jobs/(?P<id>\d+)"
_RUNNER = r"/runners/(?P<id>\d+)"

ROUTES: list[Route] = [
    _route(
        "POST",
        "/jobs",
        lambda c, b, m: c.enqueue_job(
            b.get("labels", []), b.get("duration", 0.0), b.get("scope"), b.get("name")
        ),
        201,
    ),
    _route("GET", "/jobs", lambda c, b, m: c.jobs()),
    _route("GET", _JOB, lambda c, b, m: c.job(int(m["id"]))),
    _route("POST", _JOB + "/cancel", lambda c, b, m: c.cancel_job(int(m["id"]))),
    _route("GET", "/calls", lambda c, b, m: c.calls()),
    _route("DELETE", "/calls", lambda c, b, m: c.clear_calls()),
    _route("POST", "/faults", lambda c, b, m: c.add_fault(**b)),
    _route("DELETE", "/faults", lambda c, b, m: c.clear_faults()),
    _route("POST", "/corrupt", lambda c, b, m: c.corrupt(str(b.get("version")))),
    _route("GET", "/runners", lambda c, b, m: c.runners()),
    _route("POST", _RUNNER + "/exit", lambda c, b, m: c.force_exit(int(m["id"]), b.get("code", 0))),
    _route(
        "POST", _RUNNER + "/update", lambda c, b, m: c.request_update(int(m["id"]), b["version"])
    ),
    _route("GET", "/settings", lambda c, b, m: c.settings()),
    _route("POST", "/settings", lambda c, b, m: c.configure(**b)),
]
