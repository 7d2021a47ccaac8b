"""The self-hosted runner REST endpoints at repo, org and enterprise scope."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any
from urllib.parse import urlencode

from runnerctl.sandbox import jobs
from runnerctl.sandbox.state import ApiError, Runner, iso, scope_of
from runnerctl.sandbox.wire import Context, Request, Response
from runnerctl.scope import Scope

SCOPE = r"(?:/repos/(?P<repo>[^/]+/[^/]+)|/orgs/(?P<org>[^/]+)|/enterprises/(?P<enterprise>[^/]+))"
RUNNERS = SCOPE + r"/actions/runners"
NOT_INTEGRATION = "Resource not accessible by integration"
PERMISSION = {"repo": "administration", "org": "organization_self_hosted_runners"}
MAX_LABELS = 100
MAX_LABEL_LENGTH = 256


def scope_from(match: re.Match[str]) -> Scope:
    for kind in ("repo", "org", "enterprise"):
        if match.group(kind):
            return scope_of(kind, match.group(kind))
    raise ApiError(404, "Not Found")


def authorize(ctx: Context, request: Request, scope: Scope, level: str) -> None:
    """Refuse as GitHub would: no credential, a JWT, the wrong place, a missing permission."""
    credential = request.credential
    if credential.kind == "none":
        raise ApiError(401, "Requires authentication")
    if credential.kind == "app-jwt":
        raise ApiError(401, "A JSON web token cannot call this endpoint: use an installation token")
    world = ctx.world
    if credential.kind == "installation":
        if scope.kind == "enterprise":
            raise ApiError(403, NOT_INTEGRATION)
        # A repository the app cannot see does not exist for it; an org answers 403.
        if not world.installed_on(scope) and scope.kind == "repo":
            raise ApiError(404, "Not Found")
        if not world.installed_on(scope):
            raise ApiError(403, NOT_INTEGRATION)
        if not credential.can(PERMISSION[scope.kind], level):
            raise ApiError(403, NOT_INTEGRATION)
    if not world.scope_exists(scope):
        raise ApiError(404, "Not Found")


def scoped(ctx: Context, request: Request, match: re.Match[str], level: str) -> Scope:
    scope = scope_from(match)
    authorize(ctx, request, scope, level)
    return scope


def _runner_json(ctx: Context, runner: Runner) -> dict[str, Any]:
    return runner.as_json(time.time(), ctx.world.settings.offline_after)


def _token(ctx: Context, request: Request, match: re.Match[str], kind: str) -> Response:
    scope = scoped(ctx, request, match, "write")
    world = ctx.world
    with world.lock:
        token = world.issue(kind, world.settings.registration_token_lifetime, scope=scope)
    return Response(201, {"token": token.value, "expires_at": iso(token.expires_at)})


def registration_token(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    return _token(ctx, request, match, "registration")


def remove_token(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    return _token(ctx, request, match, "remove")


def _page_number(text: str | None, default: int, maximum: int) -> int:
    try:
        number = int(text) if text is not None else default
    except ValueError:
        number = default
    return min(number, maximum) if number >= 1 else default


def list_runners(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """One page of runners, filtered by exact ``name``, with GitHub's ``Link`` header."""
    scope = scoped(ctx, request, match, "read")
    name = request.param("name")
    per_page = _page_number(request.param("per_page"), 30, 100)
    page = _page_number(request.param("page"), 1, 10**6)
    with ctx.world.lock:
        runners = [
            _runner_json(ctx, runner)
            for runner in ctx.world.runners_in(scope)
            if name is None or runner.name.lower() == name.lower()
        ]
    last = max(1, -(-len(runners) // per_page))
    body = {
        "total_count": len(runners),
        "runners": runners[(page - 1) * per_page : page * per_page],
    }
    links = _links(request, page, last, per_page, name)
    return Response(200, body, headers={"Link": links} if links else {})


def _links(request: Request, page: int, last: int, per_page: int, name: str | None) -> str:
    def url(number: int) -> str:
        query: dict[str, Any] = {"per_page": per_page, "page": number}
        if name is not None:
            query["name"] = name
        return f"<{request.api_url}{request.path}?{urlencode(query)}>"

    parts = []
    if page > 1:
        parts.append(f'{url(page - 1)}; rel="prev"')
    if page < last:
        parts.append(f'{url(page + 1)}; rel="next"')
        parts.append(f'{url(last)}; rel="last"')
    if page > 1:
        parts.append(f'{url(1)}; rel="first"')
    return ", ".join(parts)


def get_runner(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    scope = scoped(ctx, request, match, "read")
    with ctx.world.lock:
        return Response(200, _runner_json(ctx, ctx.world.runner_in(scope, int(match["id"]))))


def delete_runner(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """204; 422 while the runner runs a job; 404 when unknown."""
    scope = scoped(ctx, request, match, "write")
    with ctx.world.lock:
        runner = ctx.world.runner_in(scope, int(match["id"]))
        if runner.job_id is not None:
            raise ApiError(
                422,
                f"Bad request - Runner {runner.name} is still running a job",
                errors=[f"Runner {runner.name} is busy"],
            )
        jobs.remove_runner(ctx.world, runner)
    return Response(204)


def _validation(message: str) -> ApiError:
    return ApiError(422, f"Invalid request.\n\n{message}", errors=[message])


def check_labels(value: Any, minimum: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _validation('"labels" must be an array of strings.')
    if not minimum <= len(value) <= MAX_LABELS:
        raise _validation(f'"labels" must have between {minimum} and {MAX_LABELS} items.')
    for label in value:
        if not label.strip() or len(label) > MAX_LABEL_LENGTH:
            raise _validation(
                f'"labels" item {label!r} must be 1 to {MAX_LABEL_LENGTH} characters.'
            )
    return [label.strip() for label in value]


def generate_jitconfig(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """Create an ephemeral runner server-side and return its encoded JIT config."""
    scope = scoped(ctx, request, match, "write")
    body = request.json()
    if not isinstance(body, dict):
        raise _validation("The body must be a JSON object.")
    for required in ("name", "runner_group_id", "labels"):
        if required not in body:
            raise _validation(f'"{required}" wasn\'t supplied.')
    name, group, work = body["name"], body["runner_group_id"], body.get("work_folder", "_work")
    if not isinstance(name, str) or not name.strip():
        raise _validation('"name" must be a non-empty string.')
    if not isinstance(group, int) or isinstance(group, bool):
        raise _validation('"runner_group_id" must be an integer.')
    if not isinstance(work, str):
        raise _validation('"work_folder" must be a string.')
    labels = check_labels(body["labels"], 1)
    if group != 1:
        raise ApiError(404, "Not Found")
    world = ctx.world
    with world.lock:
        if world.find_runner(scope, name) is not None:
            raise ApiError(409, f"Already exists - A runner with the name {name} already exists.")
        runner = world.add_runner(
            scope, name, world.make_labels(labels, all_read_only=True), ephemeral=True, jit=True
        )
        runner_json = _runner_json(ctx, runner)
    encoded = encode_jit_config(ctx.server_url, scope, runner, work)
    return Response(201, {"runner": runner_json, "encoded_jit_config": encoded})


def runner_files(server_url: str, scope: Scope, runner: Runner, work: str) -> dict[str, bytes]:
    """The ``.runner``, ``.credentials`` and ``.credentials_rsaparams`` of a runner."""
    service = f"{server_url}/_services/pipelines"
    settings: dict[str, Any] = {
        "agentId": runner.id,
        "agentName": runner.name,
        "poolId": 1,
        "poolName": "Default",
        "serverUrl": service,
        "gitHubUrl": scope.runner_url(server_url),
        "workFolder": work,
    }
    if runner.ephemeral:
        settings["ephemeral"] = True
    credentials = {
        "scheme": "OAuth",
        "data": {
            "clientId": f"client-{runner.id}",
            "authorizationUrl": f"{service}/oauth2/token",
            "requireFipsCryptography": "False",
        },
    }
    bom = "\ufeff"
    return {
        ".runner": (bom + json.dumps(settings, indent=2)).encode(),
        ".credentials": (bom + json.dumps(credentials, indent=2)).encode(),
        ".credentials_rsaparams": json.dumps({"agentSecret": runner.secret}).encode(),
    }


def encode_jit_config(server_url: str, scope: Scope, runner: Runner, work: str) -> str:
    files = runner_files(server_url, scope, runner, work)
    encoded = {name: base64.b64encode(data).decode() for name, data in files.items()}
    return base64.b64encode(json.dumps(encoded).encode()).decode()


def downloads(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    scoped(ctx, request, match, "read")
    return Response(200, ctx.distribution.downloads_json(ctx.server_url))


def runner_groups(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    scope = scoped(ctx, request, match, "read")
    group = {
        "id": 1,
        "name": "Default",
        "visibility": "all",
        "default": True,
        "inherited": False,
        "allows_public_repositories": True,
        "restricted_to_workflows": False,
        "selected_workflows": [],
        "runners_url": f"{request.api_url}{scope.api_prefix}/actions/runner-groups/1/runners",
    }
    return Response(200, {"total_count": 1, "runner_groups": [group]})
