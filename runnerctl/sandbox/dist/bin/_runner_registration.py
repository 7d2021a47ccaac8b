"""Talking to GitHub at configure and remove time: URLs, tokens, the agent calls.

The API base comes from ``--url`` the way the real runner derives it: hosted GitHub hosts
get ``https://api.<host>``, every other host (GitHub Enterprise Server, and the loopback
double on 127.0.0.1) gets ``<scheme>://<host>/api/v3``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from _runner_common import HttpError, RunnerError, http_request, server_message

_HOSTED_HOSTS = ("github.com", "www.github.com", "github.localhost")
_HOSTED_SUFFIXES = (".ghe.com", ".ghe.localhost")


def valid_server_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host (the real validator's test)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_hosted(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if os.environ.get("GITHUB_ACTIONS_RUNNER_FORCE_GHES", "").lower() in ("1", "true"):
        return False
    return host in _HOSTED_HOSTS or host.endswith(_HOSTED_SUFFIXES)


def api_base(url: str) -> str:
    """The REST API root for the GitHub that ``url`` lives on."""
    parts = urlsplit(url)
    if is_hosted(url):
        return f"https://api.{parts.netloc}"
    return f"{parts.scheme}://{parts.netloc}/api/v3"


def scope_path(url: str) -> str:
    """The REST prefix of the scope ``url`` names: repos/o/r, orgs/o or enterprises/e."""
    segments = [part for part in urlsplit(url).path.split("/") if part]
    if len(segments) == 2 and segments[0].lower() == "enterprises":
        return f"enterprises/{segments[1]}"
    if len(segments) == 1:
        return f"orgs/{segments[0]}"
    if len(segments) == 2:
        return f"repos/{segments[0]}/{segments[1]}"
    raise RunnerError(f"'{url}' should point to an org, enterprise or repository.")


def token_from_pat(url: str, pat: str, kind: str) -> str:
    """Fetch a registration or remove token (``kind``) with a PAT over HTTP Basic."""
    import base64

    basic = base64.b64encode(f"github:{pat}".encode()).decode()
    endpoint = f"{api_base(url)}/{scope_path(url)}/actions/runners/{kind}-token"
    status, body = _call("POST", endpoint, f"Basic {basic}")
    if status != 201 or not isinstance(body, dict) or "token" not in body:
        raise HttpError(status, f"Failed to get a {kind} token with the PAT (HTTP {status}).")
    return str(body["token"])


def service_credential(url: str, token: str, event: str) -> tuple[str, str]:
    """Trade a registration or remove token for (service url, service token)."""
    scope_path(url)  # rejects a URL that names no scope before any call
    endpoint = f"{api_base(url)}/actions/runner-registration"
    status, body = _call(
        "POST", endpoint, f"RemoteAuth {token}", {"url": url, "runner_event": event}
    )
    if status == 404:
        raise HttpError(status, "Http response code: NotFound from 'POST " + endpoint + "'")
    if status != 200 or not isinstance(body, dict):
        raise HttpError(status, server_message(body, f"Registration call failed (HTTP {status})."))
    return str(body["url"]).rstrip("/"), str(body["token"])


def add_agent(service: str, service_token: str, agent: dict[str, Any]) -> dict[str, Any]:
    """Create (or with replace, take over) the runner's registration on the service."""
    status, body = _call("POST", f"{service}/agents", f"Bearer {service_token}", agent)
    if status == 201 and isinstance(body, dict):
        return body
    if status == 409:
        raise HttpError(status, "A runner exists with the same name")
    if status == 404:
        group = agent.get("runnerGroup")
        raise HttpError(status, f'Could not find any self-hosted runner group named "{group}".')
    raise HttpError(status, server_message(body, f"Failed to add the runner (HTTP {status})."))


def delete_agent(service: str, service_token: str, agent_id: int) -> bool:
    """Delete the registration; False when the service no longer knows it."""
    status, body = _call("DELETE", f"{service}/agents/{agent_id}", f"Bearer {service_token}")
    if status == 404:
        return False
    if status not in (200, 204):
        raise HttpError(status, server_message(body, f"Failed to remove runner (HTTP {status})."))
    return True


def _call(method: str, url: str, authorization: str, body: Any = None) -> tuple[int, Any]:
    try:
        return http_request(method, url, authorization, body)
    except OSError as error:
        raise RunnerError(f"Failed to connect to {urlsplit(url).netloc}: {error}") from error
