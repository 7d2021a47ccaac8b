"""GitHub App and token authentication against the loopback GitHub, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerctl.config.models import GitHubSettings
from runnerctl.errors import AuthError, NotFound, PermissionDenied
from runnerctl.github import GitHub, Policy
from runnerctl.github.auth import AppAuth, load_private_key
from runnerctl.github.client import Transport
from runnerctl.github.shared_tokens import Entry, SharedTokens
from runnerctl.sandbox import Sandbox
from runnerctl.scope import Scope
from tests.processes import wait_for

REPO = Scope("repo", "octo/app")
ORG = Scope("org", "octo")
FAST = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], orgs=["octo"], enterprises=["acme"]) as running:
        yield running


def settings(sandbox: Sandbox, **changes: Any) -> GitHubSettings:
    values: dict[str, Any] = {
        "api_url": sandbox.api_url,
        "server_url": sandbox.server_url,
        "releases_url": f"{sandbox.api_url}/repos/actions/runner/releases",
        "app_id": str(sandbox.app_id),
        "private_key_file": sandbox.private_key_file,
    }
    values.update(changes)
    return GitHubSettings(**values)


def calls_to(sandbox: Sandbox, fragment: str) -> list[dict[str, Any]]:
    return [call for call in sandbox.calls() if fragment in call["path"]]


def test_app_discovers_the_installation_once_per_scope(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)

    first = github.registration_token(REPO)
    github.list_runners(REPO)
    again = github.registration_token(REPO)

    assert first.value.get_secret_value() == again.value.get_secret_value()
    lookups = calls_to(sandbox, "/repos/octo/app/installation")
    assert [(c["credential"], c["status"]) for c in lookups] == [("app-jwt", 200)]
    minted = calls_to(sandbox, "/access_tokens")
    assert [c["status"] for c in minted] == [201]
    runner_calls = calls_to(sandbox, "/actions/runners")
    assert {c["credential"] for c in runner_calls} == {f"installation:{sandbox.installation_id}"}


def test_configured_installation_skips_discovery(sandbox: Sandbox, tmp_path: Path) -> None:
    configured = settings(sandbox, installation_id=sandbox.installation_id)
    github = GitHub.from_settings(configured, state_dir=tmp_path, policy=FAST)

    github.registration_token(ORG)

    assert not calls_to(sandbox, "/installation ")
    assert not [c for c in sandbox.calls() if c["path"].endswith("/installation")]
    assert github.calls == 2  # one installation token, one registration token


def test_token_auth(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(
        settings(sandbox, token=sandbox.token), state_dir=tmp_path, policy=FAST
    )

    token = github.registration_token(Scope("enterprise", "acme"))

    assert token.expires_at.timestamp() > time.time() + 3000
    assert {c["credential"] for c in sandbox.calls()} == {"token"}


def test_ghes_api_base_works_unchanged(sandbox: Sandbox, tmp_path: Path) -> None:
    ghes = settings(sandbox, api_url=f"{sandbox.api_url}/api/v3")
    github = GitHub.from_settings(ghes, state_dir=tmp_path, policy=FAST)

    assert github.list_runners(REPO) == []
    assert all(c["path"].startswith("/api/v3/") for c in sandbox.calls())


def test_jwt_is_backdated_so_a_fast_clock_still_works(sandbox: Sandbox, tmp_path: Path) -> None:
    # This host's clock runs 100 s ahead of GitHub's; GitHub tolerates an iat up to a
    # minute in its future, so only the 60 s backdating keeps the JWT acceptable.
    key = load_private_key(None, Path(sandbox.private_key_file))
    transport = Transport(sandbox.api_url, FAST)
    shared = SharedTokens(tmp_path)
    auth = AppAuth(str(sandbox.app_id), key, transport, shared, clock=lambda: time.time() + 100)
    github = GitHub(transport, auth, shared)

    github.registration_token(REPO)

    claims = jwt.decode(auth.jwt(), options={"verify_signature": False})
    assert claims["iss"] == str(sandbox.app_id)
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["iat"] <= time.time() + 100 - 59
    assert [c["status"] for c in calls_to(sandbox, "/access_tokens")] == [201]


def test_installation_token_is_refreshed_before_it_expires(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.configure(token_lifetime=4)
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)

    def minted_twice() -> bool:
        github.list_runners(REPO)
        return len(calls_to(sandbox, "/access_tokens")) >= 2

    wait_for(minted_twice, timeout=30, interval=0.2)

    assert all(c["status"] != 401 for c in sandbox.calls())


def test_refused_installation_token_is_refreshed_and_retried_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    configured = settings(sandbox, installation_id=sandbox.installation_id)
    # Another process cached a token that GitHub has since revoked.
    shared = SharedTokens(tmp_path / "github")
    now = time.time()
    revoked = Entry("ghs_revoked0000000000000000000000", now + 3000, now)
    shared.fetch(f"installation-token {sandbox.installation_id}", lambda: revoked)
    github = GitHub.from_settings(configured, state_dir=tmp_path, policy=FAST)

    assert github.list_runners(REPO) == []

    statuses = [(c["path"].split("/")[-1], c["status"]) for c in sandbox.calls()]
    assert statuses == [("runners", 401), ("access_tokens", 201), ("runners", 200)]


def test_bad_token_is_reported_without_retrying(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(
        settings(sandbox, token="ghp_wrong"), state_dir=tmp_path, policy=FAST
    )

    with pytest.raises(AuthError, match="GITHUB_TOKEN"):
        github.list_runners(REPO)
    assert len(sandbox.calls()) == 1


def test_missing_key_file_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(AuthError, match=f"cannot read GitHub App private key {missing}"):
        GitHub.from_settings(settings(sandbox, private_key_file=missing), state_dir=tmp_path)


def test_garbage_key_file_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    garbage = tmp_path / "app.pem"
    garbage.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(AuthError, match=f"{garbage} is not an unencrypted PEM private key"):
        GitHub.from_settings(settings(sandbox, private_key_file=garbage), state_dir=tmp_path)


def test_key_of_another_app_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    github = GitHub.from_settings(
        settings(sandbox, private_key_file=None, private_key=pem), state_dir=tmp_path
    )

    with pytest.raises(AuthError, match=f"refused the JWT of App {sandbox.app_id}"):
        github.registration_token(REPO)


def test_app_not_installed_names_target_and_permission(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)

    with pytest.raises(
        NotFound, match=r"not installed on repository else/where.*administration: write"
    ):
        github.registration_token(Scope("repo", "else/where"))
    with pytest.raises(
        NotFound, match=r"not installed on organization elsewhere.*organization_self_hosted_runners"
    ):
        github.registration_token(Scope("org", "elsewhere"))


def test_enterprise_with_app_credentials_is_refused_before_any_call(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)
    enterprise = Scope("enterprise", "acme")

    with pytest.raises(AuthError, match="GitHub Apps cannot manage enterprise runners"):
        github.check_scope(enterprise)
    with pytest.raises(AuthError, match="manage_runners:enterprise"):
        github.registration_token(enterprise)
    assert sandbox.calls() == []


def test_no_credentials_explains_what_to_set(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(
        settings(sandbox, app_id=None, private_key_file=None), state_dir=tmp_path
    )

    with pytest.raises(AuthError, match="GITHUB_TOKEN"):
        github.list_runners(REPO)


def test_missing_permission_names_it(sandbox: Sandbox, tmp_path: Path) -> None:
    # The configured installation does not reach this organization: GitHub answers 403.
    configured = settings(sandbox, installation_id=sandbox.installation_id)
    github = GitHub.from_settings(configured, state_dir=tmp_path, policy=FAST)

    with pytest.raises(
        PermissionDenied,
        match=r"org elsewhere: GitHub App \d+ .* lacks the App permission "
        r"organization_self_hosted_runners: write",
    ):
        github.list_runners(Scope("org", "elsewhere"))


def test_read_only_installation_is_told_to_grant_write(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.configure(permissions={"administration": "read"})
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)

    assert github.list_runners(REPO) == []  # reading is allowed
    with pytest.raises(PermissionDenied, match="lacks the App permission administration: write"):
        github.registration_token(REPO)


def test_reinstalled_app_is_discovered_again(sandbox: Sandbox, tmp_path: Path) -> None:
    # A cached lookup names an installation that no longer exists (the App was reinstalled).
    shared = SharedTokens(tmp_path / "github")
    now = time.time()
    shared.fetch(f"installation-of {REPO}", lambda: Entry("4242", now + 3600, now))
    github = GitHub.from_settings(settings(sandbox), state_dir=tmp_path, policy=FAST)

    assert github.registration_token(REPO).value.get_secret_value()

    minted = [(c["path"], c["status"]) for c in calls_to(sandbox, "/access_tokens")]
    assert minted == [
        ("/app/installations/4242/access_tokens", 404),
        (f"/app/installations/{sandbox.installation_id}/access_tokens", 201),
    ]


def test_inline_key_with_escaped_newlines_works(sandbox: Sandbox, tmp_path: Path) -> None:
    one_line = Path(sandbox.private_key_file).read_text().strip().replace("\n", "\\n")
    inline = settings(sandbox, private_key_file=None, private_key=one_line)
    github = GitHub.from_settings(inline, state_dir=tmp_path, policy=FAST)

    assert github.registration_token(REPO).value.get_secret_value()
