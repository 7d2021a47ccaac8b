"""The runner protocol shared with the stand-in runner (docs/sandbox.md, "Runner protocol").

Registration trades a registration or remove token (``RemoteAuth``) for a service token;
the service token creates or deletes an agent; the agent's secret opens a session that
long-polls for messages.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from runnerctl.sandbox import jobs
from runnerctl.sandbox.state import ApiError, random_text, scope_of
from runnerctl.sandbox.wire import Context, Request, Response
from runnerctl.scope import Scope

SERVICE_PATH = "/_services/pipelines"
SERVICE_TOKEN_LIFETIME = 3600.0


def _bearer(request: Request, scheme: str = "bearer") -> str:
    found, _, value = (request.header("authorization") or "").partition(" ")
    if found.lower() != scheme.lower() or not value.strip():
        raise ApiError(401, "Bad credentials")
    return value.strip()


def _object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise ApiError(400, "Problems parsing JSON")
    return body


def scope_of_url(url: str) -> Scope:
    """The scope a runner's ``--url`` names: one segment org, two repo or enterprise."""
    parts = [part for part in urlsplit(url).path.split("/") if part]
    if len(parts) == 1:
        return scope_of("org", parts[0])
    if len(parts) == 2:
        if parts[0].lower() == "enterprises":
            return scope_of("enterprise", parts[1])
        return scope_of("repo", f"{parts[0]}/{parts[1]}")
    raise ApiError(404, f"Not Found: {url} names no repository, organization or enterprise")


def register(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """``runner-registration``: 404 for an unknown, expired or other-scope token."""
    token_value = _bearer(request, "RemoteAuth")
    body = _object(request)
    event = body.get("runner_event", "register")
    if event not in ("register", "remove"):
        raise ApiError(422, f"runner_event {event!r} is not register or remove", errors=[])
    scope = scope_of_url(str(body.get("url", "")))
    world = ctx.world
    with world.lock:
        token = world.valid_token(token_value, "registration" if event == "register" else "remove")
        if token is None or token.scope != scope:
            raise ApiError(404, "Not Found")
        service = world.issue(f"service-{event}", SERVICE_TOKEN_LIFETIME, scope=scope)
    return Response(
        200,
        {
            "url": ctx.server_url + SERVICE_PATH,
            "token": service.value,
            "token_schema": "OAuthAccessToken",
        },
    )


def _service_scope(ctx: Context, request: Request, event: str) -> Scope:
    with ctx.world.lock:
        token = ctx.world.valid_token(_bearer(request), f"service-{event}")
    if token is None or token.scope is None:
        raise ApiError(401, "Bad credentials")
    return token.scope


def _group_id(scope: Scope, name: Any) -> int:
    if scope.kind == "repo" or not name or str(name).lower() == "default":
        return 1
    raise ApiError(404, f'Could not find any self-hosted runner group named "{name}".')


def add_agent(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """Create (or with ``replace`` take over) a registration: 409 on a taken name."""
    scope = _service_scope(ctx, request, "register")
    body = _object(request)
    name = str(body.get("name") or "").strip()
    labels = body.get("labels") or []
    if not name or not isinstance(labels, list):
        raise ApiError(400, "name and labels are required")
    group = _group_id(scope, body.get("runnerGroup"))
    world = ctx.world
    with world.lock:
        runner = world.find_runner(scope, name)
        fields: dict[str, Any] = {
            "ephemeral": bool(body.get("ephemeral")),
            "disable_update": bool(body.get("disableUpdate")),
            "group_id": group,
        }
        new_labels = world.make_labels([str(label) for label in labels])
        if runner is None:
            runner = world.add_runner(scope, name, new_labels, **fields)
        elif body.get("replace"):
            # Same id, new key: the old machine's credentials stop working (its listener
            # gets 401) and its session ends.
            jobs.drop_session(world, runner)
            world.agent_secrets.pop(runner.secret, None)
            runner.secret = random_text(48)
            world.agent_secrets[runner.secret] = runner.id
            runner.labels = new_labels
            runner.ephemeral = fields["ephemeral"]
            runner.disable_update = fields["disable_update"]
            runner.group_id = group
        else:
            raise ApiError(409, "A runner exists with the same name")
        reply = {
            "agentId": runner.id,
            "poolId": 1,
            "poolName": "Default",
            "clientId": f"client-{runner.id}",
            "agentSecret": runner.secret,
            "serverUrl": ctx.server_url + SERVICE_PATH,
        }
    return Response(201, reply)


def delete_agent(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    scope = _service_scope(ctx, request, "remove")
    with ctx.world.lock:
        runner = ctx.world.runners.get(int(match["id"]))
        if runner is None or runner.scope != scope:
            raise ApiError(404, "Not Found")
        jobs.remove_runner(ctx.world, runner)
    return Response(204)


def create_session(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    body = _object(request)
    try:
        agent_id = int(body["agentId"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "agentId is required") from None
    session = jobs.open_session(ctx.world, _bearer(request), agent_id, str(body.get("version", "")))
    return Response(201, {"sessionId": session})


def get_message(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    status = request.param("status") or "idle"
    message = jobs.poll(ctx.world, match["sid"], _bearer(request), status)
    return Response(204) if message is None else Response(200, message)


def complete_job(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    body = _object(request)
    jobs.complete(ctx.world, _bearer(request), int(match["id"]), str(body.get("result", "")))
    return Response(200, {})


def delete_session(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    jobs.close_session(ctx.world, match["sid"], _bearer(request))
    return Response(204)
