"""The double refuses what GitHub refuses: missing User-Agent, bad API versions, broken
JWTs, expired or unknown tokens, installation tokens where apps may not go."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import app_jwt, installation_token
from tests.processes import wait_for

RUNNERS = "/repos/octo/app/actions/runners"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(sandbox: Sandbox, path: str, **headers: str) -> requests.Response:
    return requests.get(sandbox.api_url + path, headers=headers, timeout=30)


def test_a_request_without_user_agent_is_forbidden(sandbox: Sandbox) -> None:
    # http.client sends no User-Agent of its own (requests and urllib3 always add one).
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=30)
    try:
        connection.request("GET", RUNNERS, headers={"Authorization": f"token {sandbox.token}"})
        response = connection.getresponse()
        assert response.status == 403
        assert b"User-Agent" in response.read()
    finally:
        connection.close()
    assert get(sandbox, RUNNERS, Authorization=f"token {sandbox.token}").status_code == 200


def test_api_versions_outside_the_supported_ones_are_refused(sandbox: Sandbox) -> None:
    auth = f"token {sandbox.token}"
    for version in ("2022-11-28", "2026-03-10"):
        response = get(sandbox, RUNNERS, Authorization=auth, **{"X-GitHub-Api-Version": version})
        assert response.status_code == 200
        assert response.headers["X-GitHub-Api-Version-Selected"] == version
    retired = get(sandbox, RUNNERS, Authorization=auth, **{"X-GitHub-Api-Version": "2021-01-01"})
    assert retired.status_code == 410
    assert "2021-01-01" in retired.json()["message"]
    garbage = get(sandbox, RUNNERS, Authorization=auth, **{"X-GitHub-Api-Version": "latest"})
    assert garbage.status_code == 400


def test_a_valid_jwt_reads_the_app_and_its_installation(sandbox: Sandbox) -> None:
    app = get(sandbox, "/app", **bearer(app_jwt(sandbox)))
    assert app.status_code == 200
    assert app.json()["id"] == sandbox.app_id
    found = get(sandbox, "/repos/octo/app/installation", **bearer(app_jwt(sandbox)))
    assert found.json()["id"] == sandbox.installation_id
    by_client_id = app_jwt(sandbox, issuer=sandbox.client_id)
    assert get(sandbox, "/orgs/octo/installation", **bearer(by_client_id)).status_code == 200
    listed = get(sandbox, "/app/installations", **bearer(app_jwt(sandbox)))
    assert [item["id"] for item in listed.json()] == [sandbox.installation_id]
    as_token = get(sandbox, "/app", Authorization=f"token {app_jwt(sandbox)}")
    assert as_token.status_code == 401


@pytest.mark.parametrize(
    ("claims", "phrase"),
    [
        ({"iat_offset": -700, "lifetime": 600}, "'exp'"),  # expired
        ({"iat_offset": -30, "lifetime": 660}, "10 minutes"),  # exp too far after iat
        ({"iat_offset": 120, "lifetime": 300}, "'iat'"),  # issued in the future
        ({"issuer": "999"}, "'iss'"),  # someone else's app
    ],
)
def test_jwt_rules(sandbox: Sandbox, claims: dict[str, object], phrase: str) -> None:
    response = get(sandbox, "/app", **bearer(app_jwt(sandbox, **claims)))  # type: ignore[arg-type]
    assert response.status_code == 401
    assert phrase in response.json()["message"]


def test_a_jwt_signed_with_another_key_is_refused(sandbox: Sandbox) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    response = get(sandbox, "/app", **bearer(app_jwt(sandbox, key_pem=other)))
    assert response.status_code == 401


def test_iat_a_little_ahead_is_tolerated(sandbox: Sandbox) -> None:
    response = get(sandbox, "/app", **bearer(app_jwt(sandbox, iat_offset=30, lifetime=300)))
    assert response.status_code == 200


def test_jwt_cannot_call_runner_endpoints_and_tokens_cannot_call_app_endpoints(
    sandbox: Sandbox,
) -> None:
    assert get(sandbox, RUNNERS, **bearer(app_jwt(sandbox))).status_code == 401
    token = installation_token(sandbox)
    assert get(sandbox, "/app/installations", Authorization=f"token {token}").status_code == 401
    assert get(sandbox, RUNNERS).status_code == 401


def test_installation_tokens_vary_in_length_and_expire(sandbox: Sandbox) -> None:
    lengths = {len(installation_token(sandbox)) for _ in range(8)}
    assert all(length >= 40 for length in lengths) and len(lengths) > 1
    sandbox.configure(token_lifetime=4)  # room for the first call on a loaded machine
    response = requests.post(
        f"{sandbox.api_url}/app/installations/{sandbox.installation_id}/access_tokens",
        headers=bearer(app_jwt(sandbox)),
        timeout=30,
    )
    assert response.status_code == 201
    token, expires_at = response.json()["token"], response.json()["expires_at"]
    assert token.startswith("ghs_")
    assert time.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ")
    assert get(sandbox, RUNNERS, Authorization=f"token {token}").status_code == 200
    wait_for(
        lambda: get(sandbox, RUNNERS, Authorization=f"token {token}").status_code == 401,
        timeout=20,
        interval=0.2,
    )
    refused = get(sandbox, RUNNERS, Authorization=f"token {token}")
    assert refused.json()["message"] == "Bad credentials"


def test_unknown_tokens_and_wrong_basic_passwords_are_bad_credentials(sandbox: Sandbox) -> None:
    assert get(sandbox, RUNNERS, Authorization="token ghs_nope").status_code == 401
    wrong = requests.get(sandbox.api_url + RUNNERS, auth=("github", "ghp_wrong"), timeout=30)
    assert wrong.status_code == 401
    right = requests.get(sandbox.api_url + RUNNERS, auth=("github", sandbox.token), timeout=30)
    assert right.status_code == 200


def test_enterprise_runner_endpoints_refuse_installation_tokens(sandbox: Sandbox) -> None:
    path = "/enterprises/acme/actions/runners"
    refused = get(sandbox, path, Authorization=f"token {installation_token(sandbox)}")
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    assert get(sandbox, path, Authorization=f"token {sandbox.token}").status_code == 200


def test_an_installation_lacking_a_permission_is_refused(sandbox: Sandbox) -> None:
    sandbox.configure(
        permissions={"administration": "read", "organization_self_hosted_runners": "write"}
    )
    token = installation_token(sandbox)
    auth = {"Authorization": f"token {token}"}
    assert get(sandbox, RUNNERS, **auth).status_code == 200
    post = requests.post(
        sandbox.api_url + RUNNERS + "/registration-token", headers=auth, timeout=30
    )
    assert post.status_code == 403
    assert post.json()["message"] == "Resource not accessible by integration"
    org = requests.post(
        sandbox.api_url + "/orgs/octo/actions/runners/registration-token", headers=auth, timeout=30
    )
    assert org.status_code == 201


def test_a_sandbox_can_start_with_an_installation_lacking_a_permission(tmp_path: Path) -> None:
    with Sandbox(permissions={"administration": "write"}, root=tmp_path / "sb") as sandbox:
        auth = {"Authorization": f"token {installation_token(sandbox)}"}
        assert get(sandbox, RUNNERS, **auth).status_code == 200
        refused = get(sandbox, "/orgs/octo/actions/runners", **auth)
        assert refused.status_code == 403
        assert refused.json()["message"] == "Resource not accessible by integration"


def test_a_token_may_narrow_but_not_widen_its_permissions(sandbox: Sandbox) -> None:
    narrow = installation_token(sandbox, permissions={"administration": "read"})
    auth = {"Authorization": f"token {narrow}"}
    assert get(sandbox, RUNNERS, **auth).status_code == 200
    refused = requests.post(sandbox.api_url + RUNNERS + "/remove-token", headers=auth, timeout=30)
    assert refused.status_code == 403
    wider = requests.post(
        f"{sandbox.api_url}/app/installations/{sandbox.installation_id}/access_tokens",
        headers=bearer(app_jwt(sandbox)),
        json={"permissions": {"contents": "write"}},
        timeout=30,
    )
    assert wider.status_code == 422


def test_scopes_without_the_app(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], enterprises=["acme"], root=tmp_path / "sb") as sandbox:
        jwt_auth = bearer(app_jwt(sandbox))
        assert get(sandbox, "/repos/octo/app/installation", **jwt_auth).status_code == 200
        assert get(sandbox, "/repos/octo/other/installation", **jwt_auth).status_code == 404
        assert get(sandbox, "/orgs/elsewhere/installation", **jwt_auth).status_code == 404
        assert get(sandbox, "/users/elsewhere/installation", **jwt_auth).status_code == 404
        assert get(sandbox, "/enterprises/acme/installation", **jwt_auth).status_code == 404
        token = {"Authorization": f"token {installation_token(sandbox)}"}
        assert get(sandbox, RUNNERS, **token).status_code == 200
        assert get(sandbox, "/repos/octo/other/actions/runners", **token).status_code == 404
        assert get(sandbox, "/orgs/elsewhere/actions/runners", **token).status_code == 403
        pat = {"Authorization": f"token {sandbox.token}"}
        assert get(sandbox, "/orgs/elsewhere/actions/runners", **pat).status_code == 404
        assert get(sandbox, "/enterprises/other/actions/runners", **pat).status_code == 404
        assert get(sandbox, "/api/v3" + RUNNERS, **pat).status_code == 200
