"""Tokens shared across real processes, the cache's file modes, and secrets kept out of logs."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.config.models import GitHubSettings
from runnerctl.github import GitHub, Policy
from runnerctl.github.shared_tokens import Entry, SharedTokens
from runnerctl.sandbox import Sandbox
from runnerctl.scope import Scope

REPO = Scope("repo", "octo/app")
FAST = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)

# A worker process: build a client from the settings, fetch a registration token, and
# report what it got and how many REST calls it made.
WORKER = """
import json, sys
from runnerctl.config.models import GitHubSettings
from runnerctl.github import GitHub
from runnerctl.scope import Scope
settings = GitHubSettings.model_validate_json(sys.argv[1])
github = GitHub.from_settings(settings, state_dir=sys.argv[2])
token = github.registration_token(Scope("repo", "octo/app"))
digest = __import__("hashlib").sha256(token.value.get_secret_value().encode()).hexdigest()
print(json.dumps({"token": digest, "calls": github.calls}))
"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], orgs=["octo"]) as running:
        yield running


def app_settings(sandbox: Sandbox) -> GitHubSettings:
    return GitHubSettings(
        api_url=sandbox.api_url,
        server_url=sandbox.server_url,
        releases_url=f"{sandbox.api_url}/repos/actions/runner/releases",
        app_id=str(sandbox.app_id),
        private_key_file=sandbox.private_key_file,
    )


def test_four_processes_mint_one_registration_token(sandbox: Sandbox, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    blob = app_settings(sandbox).model_dump_json()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, blob, str(state_dir)],
            stdout=subprocess.PIPE,
            cwd=tmp_path,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        outputs = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert all(worker.returncode == 0 for worker in workers)
    assert len({output["token"] for output in outputs}) == 1
    assert sum(output["calls"] for output in outputs) == 3  # lookup, installation, registration
    paths = [call["path"] for call in sandbox.calls()]
    assert sum(path.endswith("/registration-token") for path in paths) == 1
    assert sum(path.endswith("/access_tokens") for path in paths) == 1


def test_cache_folder_and_files_are_private(sandbox: Sandbox, tmp_path: Path) -> None:
    github = GitHub.from_settings(app_settings(sandbox), state_dir=tmp_path, policy=FAST)
    github.registration_token(REPO)

    folder = tmp_path / "github"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [path for path in folder.iterdir() if path.suffix == ".json"]
    assert len(files) == 3  # installation of the repo, installation token, registration token
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    assert not [path for path in folder.iterdir() if path.name.startswith(".tmp-")]


def test_a_new_process_reuses_the_cached_tokens(sandbox: Sandbox, tmp_path: Path) -> None:
    GitHub.from_settings(app_settings(sandbox), state_dir=tmp_path).registration_token(REPO)

    respawned = GitHub.from_settings(app_settings(sandbox), state_dir=tmp_path)
    respawned.registration_token(REPO)

    assert respawned.calls == 0


def test_debug_logs_carry_no_secret(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    # A revoked token in the cache exercises the 401 refresh path as well.
    now = time.time()
    revoked = "ghs_revoked" + "x" * 30
    SharedTokens(tmp_path / "github").fetch(
        f"installation-token {sandbox.installation_id}", lambda: Entry(revoked, now + 3000, now)
    )
    configured = app_settings(sandbox).model_copy(
        update={"installation_id": sandbox.installation_id}
    )
    github = GitHub.from_settings(configured, state_dir=tmp_path, policy=FAST)
    sandbox.add_fault(pattern="/actions/runners$", kind="status", status=502, count=1)

    registration = github.registration_token(REPO)
    removal = github.remove_token(REPO)
    jit = github.jit_config(REPO, "quiet", ["self-hosted"])
    github.list_runners(REPO)
    github.list_runners(REPO)
    github.delete_runner(REPO, jit.runner.id)
    github.release()
    print(repr(registration), repr(jit), repr(github), repr(github.credentials))

    cache = tmp_path / "github"
    installation_token = next(
        json.loads(path.read_text())["value"] for path in cache.glob("installation-token*.json")
    )
    assert hasattr(github.credentials, "jwt")
    secrets = [
        registration.value.get_secret_value(),
        removal.value.get_secret_value(),
        jit.encoded.get_secret_value(),
        installation_token,
        revoked,
        github.credentials.jwt(),
    ]
    key_lines = Path(sandbox.private_key_file).read_text().splitlines()[1:-1]
    text = "\n".join(record.getMessage() for record in caplog.records)
    text += "\n" + "\n".join(repr(record.args) for record in caplog.records)
    assert "refreshing credentials once" in text
    assert "github: GET" in text  # the capture did see the client's own lines
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    for secret in secrets:
        assert secret and secret not in text
        assert secret not in repr(registration) + repr(jit) + repr(github.credentials)
    for line in key_lines:
        assert line not in text
    assert os.environ.get("GITHUB_TOKEN") is None or os.environ["GITHUB_TOKEN"] not in text
