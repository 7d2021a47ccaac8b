"""The GitHub App endpoints, installation tokens, releases of actions/runner, /rate_limit."""

from __future__ import annotations

import re
from typing import Any

from runnerctl.sandbox.ratelimit import budget_of
from runnerctl.sandbox.state import ApiError, iso, scope_of
from runnerctl.sandbox.wire import Context, Request, Response

JWT_ONLY = "A JSON web token could not be decoded"
_EPOCH = 1735689600  # when the double pretends the app was created and installed


def _require_jwt(request: Request) -> None:
    if request.credential.kind == "none":
        raise ApiError(401, "Requires authentication")
    if request.credential.kind != "app-jwt":
        raise ApiError(401, JWT_ONLY)


def _account(ctx: Context, request: Request, login: str) -> dict[str, Any]:
    base = request.api_url
    web = f"{ctx.server_url}/{login}"
    user = f"{base}/users/{login}"
    return {
        "login": login,
        "id": 1000 + sum(login.encode()),
        "node_id": f"O_{login}",
        "avatar_url": f"{ctx.server_url}/avatars/{login}",
        "gravatar_id": "",
        "url": user,
        "html_url": web,
        "followers_url": f"{user}/followers",
        "following_url": f"{user}/following{{/other_user}}",
        "gists_url": f"{user}/gists{{/gist_id}}",
        "starred_url": f"{user}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{user}/subscriptions",
        "organizations_url": f"{user}/orgs",
        "repos_url": f"{user}/repos",
        "events_url": f"{user}/events{{/privacy}}",
        "received_events_url": f"{user}/received_events",
        "type": "Organization",
        "site_admin": False,
    }


def installation_json(ctx: Context, request: Request) -> dict[str, Any]:
    world = ctx.world
    installation = world.installation
    account = _account(ctx, request, installation.account)
    return {
        "id": installation.id,
        "account": account,
        "app_id": world.app_id,
        "app_slug": "runnerctl-sandbox",
        "client_id": world.client_id,
        "target_id": account["id"],
        "target_type": "Organization",
        "permissions": dict(installation.permissions),
        "events": [],
        "repository_selection": "all" if world.everywhere() else "selected",
        "access_tokens_url": f"{request.api_url}/app/installations/{installation.id}/access_tokens",
        "repositories_url": f"{request.api_url}/installation/repositories",
        "html_url": f"{ctx.server_url}/settings/installations/{installation.id}",
        "created_at": iso(_EPOCH),
        "updated_at": iso(_EPOCH),
        "single_file_name": None,
        "suspended_by": None,
        "suspended_at": None,
    }


def get_app(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    _require_jwt(request)
    world = ctx.world
    body = {
        "id": world.app_id,
        "slug": "runnerctl-sandbox",
        "client_id": world.client_id,
        "name": "runnerctl sandbox",
        "owner": _account(ctx, request, world.installation.account),
        "permissions": dict(world.installation.permissions),
        "events": [],
        "installations_count": 1,
        "created_at": iso(_EPOCH),
        "updated_at": iso(_EPOCH),
    }
    return Response(200, body)


def list_installations(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    _require_jwt(request)
    return Response(200, [installation_json(ctx, request)])


def get_installation(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    _require_jwt(request)
    if int(match["id"]) != ctx.world.installation.id:
        raise ApiError(404, "Not Found")
    return Response(200, installation_json(ctx, request))


def find_installation(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """``/repos/{o}/{r}``, ``/orgs/{org}``, ``/users/{u}``: 404 where the app is not."""
    _require_jwt(request)
    world = ctx.world
    if match["repo"]:
        found = world.installed_on(scope_of("repo", match["repo"]))
    elif match["org"]:
        found = world.installed_on(scope_of("org", match["org"]))
    elif match["user"]:
        found = world.account_installed(match["user"])
    else:
        found = False  # enterprises: the double's app is never installed on one
    if not found:
        raise ApiError(404, "Not Found")
    return Response(200, installation_json(ctx, request))


def _narrowed(granted: dict[str, str], requested: Any) -> dict[str, str]:
    """The permissions a token asks for, which may only narrow the installation's."""
    if requested is None:
        return dict(granted)
    if not isinstance(requested, dict):
        raise ApiError(422, "Invalid request: permissions must be an object", errors=[])
    for name, level in requested.items():
        held = granted.get(name)
        if level not in ("read", "write") or held is None or (held == "read" and level == "write"):
            raise ApiError(
                422,
                "The permissions requested are not granted to this installation.",
                errors=[{"resource": "Permissions", "field": name, "code": "invalid"}],
            )
    return {str(name): str(level) for name, level in requested.items()}


def create_access_token(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """201 with a ``ghs_`` token whose lifetime is the ``token_lifetime`` setting."""
    _require_jwt(request)
    world = ctx.world
    if int(match["id"]) != world.installation.id:
        raise ApiError(404, "Not Found")
    body = request.json(required=False)
    if not isinstance(body, dict):
        raise ApiError(422, "Invalid request: the body must be an object", errors=[])
    with world.lock:
        permissions = _narrowed(world.installation.permissions, body.get("permissions"))
        token = world.issue(
            "installation",
            world.settings.token_lifetime,
            installation_id=world.installation.id,
            permissions=permissions,
        )
    selected = "selected" if body.get("repositories") or body.get("repository_ids") else "all"
    return Response(
        201,
        {
            "token": token.value,
            "expires_at": iso(token.expires_at),
            "permissions": permissions,
            "repository_selection": selected,
        },
    )


def release(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    tag = "latest" if match["tag"] is None else match["tag"]
    return Response(200, ctx.distribution.release_json(tag, ctx.server_url, request.api_url))


def release_asset(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """The asset's JSON, or with ``Accept: application/octet-stream`` a 302 to the file."""
    version, _ = ctx.distribution.asset(int(match["id"]))
    body = ctx.distribution.release_json(f"v{version}", ctx.server_url, request.api_url)
    asset = next(item for item in body["assets"] if item["id"] == int(match["id"]))
    if "application/octet-stream" in (request.header("accept") or ""):
        return Response(302, headers={"Location": asset["browser_download_url"]})
    return Response(200, asset)


def rate_limit(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """The caller's budget; this call itself is free."""
    settings = ctx.world.settings
    credential = request.credential
    key, limit = budget_of(
        credential.kind, credential.label, settings.rate_limit, settings.anonymous_rate_limit
    )
    window = ctx.limiter.window(key, limit)
    core = {
        "limit": window.limit,
        "remaining": window.remaining,
        "used": window.used,
        "reset": window.reset,
        "resource": "core",
    }
    return Response(200, {"resources": {"core": core}, "rate": core})
