"""Rate limits, the secondary limit, injected faults and the call log."""

from __future__ import annotations

import time

import pytest
import requests

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import app_jwt, installation_token

RUNNERS = "/repos/octo/app/actions/runners"


@pytest.fixture
def http(sandbox: Sandbox) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"token {installation_token(sandbox)}"
    return session


@pytest.mark.parametrize("status", [403, 429])
def test_a_spent_budget_is_refused_with_headers(
    sandbox: Sandbox, http: requests.Session, status: int
) -> None:
    sandbox.configure(rate_limit=3, rate_limit_status=status)
    seen = [http.get(sandbox.api_url + RUNNERS, timeout=30) for _ in range(3)]
    assert [int(r.headers["x-ratelimit-remaining"]) for r in seen] == [2, 1, 0]
    assert [int(r.headers["x-ratelimit-used"]) for r in seen] == [1, 2, 3]
    assert {r.headers["x-ratelimit-limit"] for r in seen} == {"3"}
    assert {r.headers["x-ratelimit-resource"] for r in seen} == {"core"}
    reset = int(seen[0].headers["x-ratelimit-reset"])
    assert time.time() < reset <= time.time() + 3600
    refused = http.get(sandbox.api_url + RUNNERS, timeout=30)
    assert refused.status_code == status
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "rate limit" in refused.json()["message"]
    # /rate_limit is free and reports the same window.
    report = http.get(sandbox.api_url + "/rate_limit", timeout=30).json()
    assert report["resources"]["core"]["remaining"] == 0
    assert report["rate"]["reset"] == reset


def test_budgets_are_per_credential(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.configure(rate_limit=2)
    for _ in range(2):
        http.get(sandbox.api_url + RUNNERS, timeout=30)
    assert http.get(sandbox.api_url + RUNNERS, timeout=30).status_code == 403
    pat = {"Authorization": f"token {sandbox.token}"}
    assert requests.get(sandbox.api_url + RUNNERS, headers=pat, timeout=30).status_code == 200
    # A new token of the same installation shares its budget, as on GitHub.
    other = {"Authorization": f"token {installation_token(sandbox)}"}
    assert requests.get(sandbox.api_url + RUNNERS, headers=other, timeout=30).status_code == 403


def test_anonymous_callers_get_sixty(sandbox: Sandbox) -> None:
    url = sandbox.api_url + "/repos/actions/runner/releases/latest"
    first = requests.get(url, timeout=30)
    assert first.headers["x-ratelimit-limit"] == "60"


def test_secondary_limit_answers_with_retry_after(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.add_fault(RUNNERS + "$", "secondary", seconds=42, count=1)
    limited = http.get(sandbox.api_url + RUNNERS, timeout=30)
    assert limited.status_code == 403
    assert limited.headers["retry-after"] == "42"
    assert "secondary rate limit" in limited.json()["message"]
    assert http.get(sandbox.api_url + RUNNERS, timeout=30).status_code == 200


def test_status_faults_for_n_calls_and_one_method(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.add_fault("/actions/runners$", "status", status=502, count=2, method="GET")
    url = sandbox.api_url + RUNNERS
    codes = [http.get(url, timeout=30).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    sandbox.add_fault("registration-token", "status", status=500, method="GET")
    assert http.post(url + "/registration-token", timeout=30).status_code == 201
    sandbox.clear_faults()
    sandbox.add_fault("registration-token", "status", status=503)
    assert http.post(url + "/registration-token", timeout=30).status_code == 503


def test_a_fraction_of_calls_fail(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.add_fault("/actions/runners$", "status", status=500, fraction=0.5)
    codes = [http.get(sandbox.api_url + RUNNERS, timeout=30).status_code for _ in range(60)]
    assert set(codes) == {200, 500}
    assert 10 <= codes.count(500) <= 50


def test_latency_and_dropped_connections(sandbox: Sandbox, http: requests.Session) -> None:
    sandbox.add_fault("/actions/runners$", "latency", seconds=0.5, count=1)
    started = time.monotonic()
    assert http.get(sandbox.api_url + RUNNERS, timeout=30).status_code == 200
    assert time.monotonic() - started >= 0.5
    sandbox.add_fault("/downloads$", "drop", count=1)
    with pytest.raises(requests.ConnectionError):
        http.get(sandbox.api_url + RUNNERS + "/downloads", timeout=30)
    assert http.get(sandbox.api_url + RUNNERS + "/downloads", timeout=30).status_code == 200


def test_faults_and_settings_over_http(sandbox: Sandbox, http: requests.Session) -> None:
    admin = sandbox.admin_url
    fault = {"pattern": "/actions/runners$", "kind": "status", "status": 503, "count": 1}
    assert requests.post(admin + "/faults", json=fault, timeout=30).status_code == 200
    assert http.get(sandbox.api_url + RUNNERS, timeout=30).status_code == 503
    bad = requests.post(admin + "/faults", json={"pattern": "x", "kind": "nope"}, timeout=30)
    assert bad.status_code == 422
    settings = requests.post(admin + "/settings", json={"offline_after": 2}, timeout=30).json()
    assert settings["offline_after"] == 2.0
    assert requests.delete(admin + "/faults", timeout=30).status_code == 200


def test_every_call_is_recorded_with_its_credential(
    sandbox: Sandbox, http: requests.Session
) -> None:
    sandbox.clear_calls()
    http.get(sandbox.api_url + RUNNERS, timeout=30)
    requests.get(
        sandbox.api_url + "/api/v3/app",
        headers={"Authorization": f"Bearer {app_jwt(sandbox)}"},
        timeout=30,
    )
    requests.get(
        sandbox.api_url + "/rate_limit",
        headers={"Authorization": f"token {sandbox.token}"},
        timeout=30,
    )
    requests.get(sandbox.api_url + "/nowhere", timeout=30)
    requests.get(sandbox.admin_url + "/calls", timeout=30)
    calls = [(c["method"], c["path"], c["credential"], c["status"]) for c in sandbox.calls()]
    assert calls == [
        ("GET", RUNNERS, f"installation:{sandbox.installation_id}", 200),
        ("GET", "/api/v3/app", "app-jwt", 200),
        ("GET", "/rate_limit", "token", 200),
        ("GET", "/nowhere", "none", 404),
    ]
    over_http = requests.get(sandbox.admin_url + "/calls", timeout=30).json()
    assert len(over_http) == 4
    requests.delete(sandbox.admin_url + "/calls", timeout=30)
    assert sandbox.calls() == []


def test_control_over_http_reports_runners_and_refuses_unknown_settings(
    sandbox: Sandbox,
) -> None:
    admin = sandbox.admin_url
    created = requests.post(
        sandbox.api_url + "/orgs/octo/actions/runners/generate-jitconfig",
        headers={"Authorization": f"token {sandbox.token}"},
        json={"name": "seen", "runner_group_id": 1, "labels": ["linux"]},
        timeout=30,
    ).json()["runner"]
    runners = requests.get(admin + "/runners", timeout=30).json()
    assert [(r["id"], r["scope"], r["jit"], r["session"]) for r in runners] == [
        (created["id"], "org:octo", True, False)
    ]
    unknown = requests.post(admin + "/settings", json={"offline_afterr": 1}, timeout=30)
    assert unknown.status_code == 422
    assert (
        requests.post(admin + "/corrupt", json={"version": "9.9.9"}, timeout=30).status_code == 404
    )
    assert (
        requests.post(admin + "/corrupt", json={"version": "2.336.0"}, timeout=30).status_code
        == 200
    )
    gone = requests.post(admin + "/runners/4242/exit", json={"code": 1}, timeout=30)
    assert gone.status_code == 404
    # Only the REST call was recorded: control calls never are.
    assert [call["path"] for call in sandbox.calls()] == [
        "/orgs/octo/actions/runners/generate-jitconfig"
    ]
