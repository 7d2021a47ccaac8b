"""Runner operations at each scope, downloads and releases, against the loopback GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.config.models import GitHubSettings
from runnerctl.errors import Conflict, NotFound
from runnerctl.github import GitHub, Policy
from runnerctl.sandbox import Sandbox
from runnerctl.scope import Scope

REPO = Scope("repo", "octo/app")
ORG = Scope("org", "octo")
ENTERPRISE = Scope("enterprise", "acme")
FAST = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], orgs=["octo"], enterprises=["acme"]) as running:
        yield running


@pytest.fixture
def github(sandbox: Sandbox, tmp_path: Path) -> GitHub:
    settings = GitHubSettings(
        api_url=sandbox.api_url,
        server_url=sandbox.server_url,
        releases_url=f"{sandbox.api_url}/repos/actions/runner/releases",
        token=sandbox.token,
    )
    return GitHub.from_settings(settings, state_dir=tmp_path, policy=FAST)


@pytest.mark.parametrize("scope", [REPO, ORG, ENTERPRISE], ids=str)
def test_runner_lifecycle_at_every_scope(github: GitHub, scope: Scope) -> None:
    assert github.registration_token(scope).value.get_secret_value()
    assert github.remove_token(scope).value.get_secret_value()

    config = github.jit_config(scope, "ci-1", ["self-hosted", "linux", "gpu"], "Default")
    assert "**" in repr(config)  # the JIT config is masked
    assert config.encoded.get_secret_value()

    listed = github.list_runners(scope, name="ci-1")
    assert [r.name for r in listed] == ["ci-1"]
    assert "gpu" in listed[0].labels
    assert github.get_runner(scope, config.runner.id) == listed[0]

    assert github.delete_runner(scope, config.runner.id) is True
    assert github.delete_runner(scope, config.runner.id) is False
    assert github.get_runner(scope, config.runner.id) is None


def test_taken_name_is_a_conflict(github: GitHub) -> None:
    github.jit_config(ORG, "twin", ["self-hosted"])

    with pytest.raises(Conflict, match="twin already exists"):
        github.jit_config(ORG, "twin", ["self-hosted"])


def test_unknown_runner_group_is_named(github: GitHub) -> None:
    with pytest.raises(NotFound, match="no runner group named gpus"):
        github.jit_config(ORG, "grouped", ["self-hosted"], runner_group="gpus")
    with pytest.raises(NotFound, match="repositories have no runner groups"):
        github.jit_config(REPO, "grouped", ["self-hosted"], runner_group="gpus")


def test_runner_group_id_is_looked_up_once(sandbox: Sandbox, github: GitHub) -> None:
    github.jit_config(ORG, "g-1", ["self-hosted"], runner_group="default")
    github.jit_config(ORG, "g-2", ["self-hosted"], runner_group="Default")

    lookups = [c for c in sandbox.calls() if c["path"].endswith("/runner-groups")]
    assert len(lookups) == 1


def test_labels(github: GitHub) -> None:
    runner = github.jit_config(REPO, "labelled", ["self-hosted", "linux"]).runner

    assert "blue" in github.add_labels(REPO, runner.id, ["blue", "green"])
    assert set(github.runner_labels(REPO, runner.id)) >= {"blue", "green"}
    assert "green" not in (github.remove_label(REPO, runner.id, "green") or [])
    assert github.remove_label(REPO, runner.id, "green") is None  # absent counts as removed
    assert github.set_labels(REPO, runner.id, ["red"])[-1:] == ["red"]
    assert "red" not in github.clear_labels(REPO, runner.id)


def test_runner_downloads_list_the_latest_version(github: GitHub) -> None:
    downloads = github.runner_downloads(REPO)

    linux = [d for d in downloads if d.os == "linux"]
    assert {d.architecture for d in linux} >= {"x64", "arm64"}
    assert {d.version for d in linux} == {"2.336.0"}
    assert all(d.sha256_checksum and len(d.sha256_checksum) == 64 for d in linux)


def test_releases_latest_and_pinned(github: GitHub) -> None:
    latest = github.release()
    pinned = github.release("v2.334.0")

    assert latest.version == "2.336.0"
    assert pinned.version == "2.334.0"
    asset = pinned.asset("actions-runner-linux-x64-2.334.0.tar.gz")
    assert asset is not None
    marker = pinned.checksum_marker("linux-x64")
    assert marker is not None and len(marker) == 64
    assert asset.sha256 in (None, marker)
    with pytest.raises(NotFound, match=r"runner release v9\.9\.9 not found"):
        github.release("v9.9.9")
