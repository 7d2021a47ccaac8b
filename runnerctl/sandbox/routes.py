"""Every path the double answers, with the kind of checks each gets."""

from __future__ import annotations

from runnerctl.sandbox import apps, control, labels, protocol, rest
from runnerctl.sandbox.wire import Route, route

_RUNNERS = rest.RUNNERS
_ONE = _RUNNERS + r"/(?P<id>\d+)"
_LOOKUP = (
    r"(?:/repos/(?P<repo>[^/]+/[^/]+)|/orgs/(?P<org>[^/]+)|/users/(?P<user>[^/]+)"
    r"|/enterprises/(?P<enterprise>[^/]+))/installation"
)
_RELEASES = "/repos/actions/runner/releases"
_SERVICE = protocol.SERVICE_PATH

ROUTES: list[Route] = [
    route("POST", _RUNNERS + "/registration-token", rest.registration_token),
    route("POST", _RUNNERS + "/remove-token", rest.remove_token),
    route("POST", _RUNNERS + "/generate-jitconfig", rest.generate_jitconfig),
    route("GET", _RUNNERS + "/downloads", rest.downloads),
    route("GET", _RUNNERS, rest.list_runners),
    route("GET", _ONE, rest.get_runner),
    route("DELETE", _ONE, rest.delete_runner),
    route("GET", _ONE + "/labels", labels.list_labels),
    route("POST", _ONE + "/labels", labels.add_labels),
    route("PUT", _ONE + "/labels", labels.set_labels),
    route("DELETE", _ONE + "/labels", labels.remove_all_labels),
    route("DELETE", _ONE + r"/labels/(?P<name>[^/]+)", labels.remove_label),
    route("GET", rest.SCOPE + "/actions/runner-groups", rest.runner_groups),
    route("GET", "/app", apps.get_app),
    route("GET", "/app/installations", apps.list_installations),
    route("GET", r"/app/installations/(?P<id>\d+)", apps.get_installation),
    route("POST", r"/app/installations/(?P<id>\d+)/access_tokens", apps.create_access_token),
    route("GET", _LOOKUP, apps.find_installation),
    route("GET", _RELEASES + r"/(?:latest|tags/(?P<tag>[^/]+))", apps.release),
    route("GET", _RELEASES + r"/assets/(?P<id>\d+)", apps.release_asset),
    route("GET", "/rate_limit", apps.rate_limit, counted=False),
    route("POST", "/actions/runner-registration", protocol.register, "protocol"),
    route("POST", _SERVICE + "/agents", protocol.add_agent, "protocol"),
    route("DELETE", _SERVICE + r"/agents/(?P<id>\d+)", protocol.delete_agent, "protocol"),
    route("POST", _SERVICE + "/sessions", protocol.create_session, "protocol"),
    route("GET", _SERVICE + r"/sessions/(?P<sid>[^/]+)/message", protocol.get_message, "protocol"),
    route("DELETE", _SERVICE + r"/sessions/(?P<sid>[^/]+)", protocol.delete_session, "protocol"),
    route("POST", _SERVICE + r"/jobs/(?P<id>\d+)/complete", protocol.complete_job, "protocol"),
    *control.ROUTES,
]
