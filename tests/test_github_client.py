"""The REST transport: headers, retries, rate limits, ETags and pagination, over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runnerctl import __version__
from runnerctl.config.models import GitHubSettings
from runnerctl.errors import RateLimited, Unreachable
from runnerctl.github import GitHub, Policy
from runnerctl.github.client import Transport
from runnerctl.sandbox import Sandbox
from runnerctl.scope import Scope

REPO = Scope("repo", "octo/app")
FAST = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], orgs=["octo"]) as running:
        yield running


@pytest.fixture
def github(sandbox: Sandbox, tmp_path: Path) -> GitHub:
    settings = GitHubSettings(
        api_url=sandbox.api_url,
        server_url=sandbox.server_url,
        app_id=str(sandbox.app_id),
        installation_id=sandbox.installation_id,
        private_key_file=sandbox.private_key_file,
    )
    return GitHub.from_settings(settings, state_dir=tmp_path, policy=FAST)


def runner_calls(sandbox: Sandbox) -> list[tuple[str, int]]:
    return [(c["method"], c["status"]) for c in sandbox.calls() if "/actions/runners" in c["path"]]


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"total_count": 0, "runners": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Exhausted(BaseHTTPRequestHandler):
    """Answers the first request as a spent primary rate limit resetting in 2 s."""

    answered: list[float] = []

    def do_GET(self) -> None:
        first = not type(self).answered
        type(self).answered.append(time.time())
        body = b"{}" if not first else b'{"message": "API rate limit exceeded"}'
        self.send_response(403 if first else 200)
        if first:
            self.send_header("x-ratelimit-remaining", "0")
            self.send_header("x-ratelimit-reset", str(int(time.time()) + 2))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_server(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("local_server", [_Recorder], indirect=True)
def test_every_request_carries_githubs_headers(local_server: str) -> None:
    transport = Transport(local_server, FAST)
    transport.request("GET", "/repos/octo/app/actions/runners", "Bearer x")

    headers = _Recorder.seen[-1]
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"] == f"runnerctl/{__version__}"


def test_server_errors_are_retried_then_succeed(sandbox: Sandbox, github: GitHub) -> None:
    github.list_runners(REPO)  # mint the installation token first
    sandbox.clear_calls()
    sandbox.add_fault(pattern="/actions/runners$", kind="status", status=502, count=2)

    assert github.list_runners(REPO) == []

    # The third try is conditional on the first list's ETag, so it comes back 304.
    assert runner_calls(sandbox) == [("GET", 502), ("GET", 502), ("GET", 304)]


def test_dropped_connections_are_retried(sandbox: Sandbox, github: GitHub) -> None:
    github.list_runners(REPO)
    sandbox.add_fault(pattern="/actions/runners$", kind="drop", count=2)

    assert github.list_runners(REPO) == []


def test_unreachable_after_every_retry(sandbox: Sandbox, github: GitHub) -> None:
    github.list_runners(REPO)
    sandbox.add_fault(pattern="/actions/runners$", kind="status", status=503)

    with pytest.raises(Unreachable, match=r"answered 503 .* after 4 attempts"):
        github.list_runners(REPO)


def test_nothing_listening_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = Transport(f"http://127.0.0.1:{port}", FAST)

    started = time.monotonic()
    with pytest.raises(Unreachable, match=rf"127\.0\.0\.1:{port} did not answer .* 4 attempts"):
        transport.request("GET", "/rate_limit", None)
    assert time.monotonic() - started < 5


def test_slow_answers_time_out(sandbox: Sandbox, github: GitHub) -> None:
    github.list_runners(REPO)
    sandbox.add_fault(pattern="/actions/runners$", kind="latency", seconds=3)
    github.transport.policy = Policy(read_timeout=0.5, attempts=2, backoff=0.05)

    with pytest.raises(Unreachable, match="ReadTimeout"):
        github.list_runners(REPO)


def test_secondary_rate_limit_waits_for_retry_after(sandbox: Sandbox, github: GitHub) -> None:
    github.list_runners(REPO)
    sandbox.add_fault(pattern="/actions/runners$", kind="secondary", seconds=1, count=1)

    started = time.monotonic()
    assert github.list_runners(REPO) == []
    waited = time.monotonic() - started

    assert waited >= 1.0
    assert [status for _, status in runner_calls(sandbox)][-2:] == [403, 304]


@pytest.mark.parametrize("local_server", [_Exhausted], indirect=True)
def test_primary_rate_limit_waits_until_reset(local_server: str) -> None:
    transport = Transport(local_server, FAST)

    reply = transport.request("GET", "/repos/octo/app/actions/runners", "Bearer x")

    assert reply.status == 200
    first, second = _Exhausted.answered
    assert second - first >= 1.0  # waited for x-ratelimit-reset (+1 s), not at once
    assert transport.calls == 2


def test_long_primary_rate_limit_raises_instead_of_waiting(
    sandbox: Sandbox, github: GitHub
) -> None:
    sandbox.configure(rate_limit=3)
    github.list_runners(REPO)
    github.registration_token(REPO)

    started = time.monotonic()
    with pytest.raises(RateLimited, match="rate limit") as raised:
        github.get_runner(REPO, 1)
        github.get_runner(REPO, 2)

    assert time.monotonic() - started < 3
    # The window resets within the hour; the error says when.
    assert time.time() + 5 < raised.value.retry_at <= time.time() + 3700


def test_unchanged_list_costs_nothing(sandbox: Sandbox, github: GitHub) -> None:
    github.jit_config(REPO, "etag-1", ["self-hosted"])
    first = github.list_runners(REPO)
    calls_before = github.calls

    second = github.list_runners(REPO)

    assert second == first
    assert github.calls == calls_before
    assert github.not_modified == 1
    assert runner_calls(sandbox)[-1] == ("GET", 304)

    github.jit_config(REPO, "etag-2", ["self-hosted"])
    assert {r.name for r in github.list_runners(REPO)} == {"etag-1", "etag-2"}


def test_pagination_follows_link_headers(sandbox: Sandbox, github: GitHub) -> None:
    for number in range(5):
        github.jit_config(REPO, f"page-{number}", ["self-hosted"])
    authorization = github.credentials.authorization(REPO)

    pages = list(
        github.transport.pages("/repos/octo/app/actions/runners", authorization, {"per_page": 2})
    )

    assert [len(page.body["runners"]) for page in pages] == [2, 2, 1]
    names = [r["name"] for page in pages for r in page.body["runners"]]
    assert sorted(names) == [f"page-{n}" for n in range(5)]
    assert len(github.list_runners(REPO)) == 5
