"""The runner download cache against the loopback GitHub, over real HTTP and real processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from runnerctl.config.models import GitHubSettings
from runnerctl.distribution import DownloadPolicy, RunnerCache, host_arch, installed_version
from runnerctl.distribution.locking import file_lock
from runnerctl.errors import ChecksumMismatch, DistributionError
from runnerctl.github import GitHub, Policy
from runnerctl.sandbox import Sandbox, tarballs
from runnerctl.scope import Scope
from tests.processes import wait_for

SCOPE = Scope("repo", "octo/app")
ARCH = host_arch()
FAST_API = Policy(backoff=0.05, backoff_cap=0.2, max_rate_wait=5.0, read_timeout=10.0)
FAST_DOWNLOAD = DownloadPolicy(timeout=10.0, attempts=3, backoff=0.05)


def settings_for(sandbox: Sandbox) -> GitHubSettings:
    return GitHubSettings(
        api_url=sandbox.api_url,
        server_url=sandbox.server_url,
        releases_url=f"{sandbox.api_url}/repos/actions/runner/releases",
        token=SecretStr(sandbox.token),
    )


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], root=tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.fixture
def sandbox(shared_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The module's double, with no faults and nothing in its call log."""
    shared_sandbox.clear_faults()
    settled_calls(shared_sandbox)
    yield shared_sandbox
    shared_sandbox.clear_faults()


@pytest.fixture
def own_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A double for this test alone, which it may corrupt or stop."""
    with Sandbox(repos=["octo/app"], root=tmp_path / "sandbox") as running:
        yield running


@pytest.fixture
def github(sandbox: Sandbox, tmp_path: Path) -> Iterator[GitHub]:
    client = GitHub.from_settings(settings_for(sandbox), tmp_path / "state", FAST_API)
    yield client
    client.close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def make_cache(cache_dir: Path, github: GitHub | None, **options: Any) -> RunnerCache:
    options.setdefault("policy", FAST_DOWNLOAD)
    return RunnerCache(cache_dir, github=github, **options)


SENTINEL = "/repos/octo/app/actions/runners"


def settled_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The calls the double answered since the last look, then forgets them.

    The double logs a call just after answering it, so one request of our own is made
    and awaited: every call answered before it has been logged by then.
    """
    headers = {"Authorization": f"token {sandbox.token}"}
    requests.get(sandbox.api_url + SENTINEL, headers=headers, timeout=10)
    wait_for(lambda: any(call["path"] == SENTINEL for call in sandbox.calls()))
    calls = [call for call in sandbox.calls() if call["path"] != SENTINEL]
    sandbox.clear_calls()
    return calls


def downloads(calls: list[dict[str, Any]]) -> list[str]:
    return [call["path"] for call in calls if call["path"].startswith("/_downloads/")]


def place(cache_dir: Path, version: str, *, checksum: str | None = None) -> Path:
    """Put a tarball and its .sha256 in the cache the way an operator would."""
    path = tarballs.build_tarball(version, ARCH, cache_dir)
    digest = checksum or hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return path


def cache_files(cache_dir: Path) -> list[str]:
    """Tarballs, checksums and partial downloads in the cache (not locks or the latest note)."""
    return sorted(
        name
        for name in os.listdir(cache_dir)
        if not name.endswith(".lock") and not name.startswith("latest-")
    )


# -- resolving and downloading ------------------------------------------------------------


def test_latest_comes_from_the_scope_downloads_list(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    tarball = make_cache(cache_dir, github).ensure(SCOPE, "latest")

    name = f"actions-runner-linux-{ARCH}-2.336.0.tar.gz"
    assert (tarball.version, tarball.arch, tarball.path) == ("2.336.0", ARCH, cache_dir / name)
    assert hashlib.sha256(tarball.path.read_bytes()).hexdigest() == tarball.sha256
    assert cache_files(cache_dir) == [name, f"{name}.sha256"]
    check = subprocess.run(
        ["sha256sum", "-c", f"{name}.sha256"], cwd=cache_dir, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout
    calls = settled_calls(sandbox)
    assert [call["path"] for call in calls] == [
        "/repos/octo/app/actions/runners/downloads",
        f"/_downloads/{name}",
    ]
    assert calls[1]["credential"] == "none"


def test_latest_is_remembered_across_processes_for_its_ttl(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    make_cache(cache_dir, github).ensure(SCOPE, "latest")
    sandbox.clear_calls()

    again = make_cache(cache_dir, github).ensure(SCOPE, "latest")
    assert again.version == "2.336.0"
    assert settled_calls(sandbox) == []

    make_cache(cache_dir, github, latest_ttl=0).ensure(SCOPE, "latest")
    paths = [call["path"] for call in settled_calls(sandbox)]
    assert paths == ["/repos/octo/app/actions/runners/downloads"]


def test_a_pinned_version_comes_from_its_release(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    tarball = make_cache(cache_dir, github).ensure(SCOPE, "2.334.0")

    release = github.release("v2.334.0")
    assert tarball.version == "2.334.0"
    assert tarball.sha256 == release.checksum_marker(f"linux-{ARCH}")
    assert hashlib.sha256(tarball.path.read_bytes()).hexdigest() == tarball.sha256
    paths = [call["path"] for call in settled_calls(sandbox)]
    assert paths[:2] == [
        "/repos/actions/runner/releases/tags/v2.334.0",
        f"/_downloads/actions-runner-linux-{ARCH}-2.334.0.tar.gz",
    ]


def test_an_unknown_version_names_the_release_it_looked_for(
    github: GitHub, cache_dir: Path
) -> None:
    with pytest.raises(DistributionError, match=r"runner version 2\.999\.0 has no release"):
        make_cache(cache_dir, github).ensure(SCOPE, "2.999.0")


def test_a_malformed_version_is_refused(cache_dir: Path) -> None:
    with pytest.raises(DistributionError, match=r"neither 'latest' nor X\.Y\.Z"):
        make_cache(cache_dir, None).ensure(SCOPE, "v2.336")


def test_a_corrupted_tarball_is_refused_and_nothing_is_kept(
    own_sandbox: Sandbox, cache_dir: Path, tmp_path: Path
) -> None:
    sandbox = own_sandbox
    sandbox.corrupt("2.336.0")
    github = GitHub.from_settings(settings_for(sandbox), tmp_path / "state", FAST_API)
    cache = make_cache(cache_dir, github)
    dest = tmp_path / "runners" / "ci-1"

    with pytest.raises(ChecksumMismatch, match="not the published"):
        cache.extract(cache.ensure(SCOPE, "latest"), dest)

    assert cache_files(cache_dir) == []
    assert not dest.exists()
    assert len(downloads(settled_calls(sandbox))) == 1  # a checksum mismatch is not retried


def test_a_dropped_download_is_retried_then_given_up(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    sandbox.add_fault("^/_downloads/", "drop")

    with pytest.raises(DistributionError, match="failed 3 times"):
        make_cache(cache_dir, github).ensure(SCOPE, "2.335.0")

    assert cache_files(cache_dir) == []
    assert len(downloads(settled_calls(sandbox))) == 3


def test_one_dropped_download_is_survived(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    sandbox.add_fault("^/_downloads/", "drop", count=1)

    tarball = make_cache(cache_dir, github).ensure(SCOPE, "2.335.0")

    assert hashlib.sha256(tarball.path.read_bytes()).hexdigest() == tarball.sha256
    assert len(downloads(settled_calls(sandbox))) == 2


def test_a_server_error_on_the_download_is_retried(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    sandbox.add_fault("^/_downloads/", "status", status=502, count=2)

    make_cache(cache_dir, github).ensure(SCOPE, "2.335.0")

    assert [call["status"] for call in settled_calls(sandbox) if "_downloads" in call["path"]] == [
        502,
        502,
        200,
    ]


# -- many processes, one download ---------------------------------------------------------

ENSURE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pydantic import SecretStr
    from runnerctl.config.models import GitHubSettings
    from runnerctl.distribution import DownloadPolicy, RunnerCache
    from runnerctl.github import GitHub
    from runnerctl.scope import Scope

    api = os.environ["TEST_API_URL"]
    settings = GitHubSettings(
        api_url=api,
        server_url=api,
        releases_url=api + "/repos/actions/runner/releases",
        token=SecretStr(os.environ["TEST_GITHUB_TOKEN"]),
    )
    github = GitHub.from_settings(settings, state_dir=sys.argv[2])
    cache = RunnerCache(sys.argv[1], github=github, keep=3, policy=DownloadPolicy(timeout=30))
    tarball = cache.ensure(Scope("repo", "octo/app"), sys.argv[3])
    print(json.dumps({"path": str(tarball.path), "sha256": tarball.sha256}))
    """
)


def test_concurrent_processes_download_a_version_once(
    sandbox: Sandbox, cache_dir: Path, tmp_path: Path
) -> None:
    # A slow download keeps the first process busy while the others queue on the lock.
    sandbox.add_fault("^/_downloads/", "latency", seconds=1.5)
    environ = {
        **os.environ,
        "TEST_API_URL": sandbox.api_url,
        "TEST_GITHUB_TOKEN": sandbox.token,
    }
    command = [sys.executable, "-c", ENSURE_SCRIPT, str(cache_dir), str(tmp_path / "state")]
    workers = [
        subprocess.Popen(
            [*command, "2.335.0"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    try:
        results = [worker.communicate(timeout=90) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert [worker.returncode for worker in workers] == [0] * 4, [err for _, err in results]
    answers = {out.decode().strip() for out, _ in results}
    assert len(answers) == 1
    answer = json.loads(answers.pop())
    assert hashlib.sha256(Path(answer["path"]).read_bytes()).hexdigest() == answer["sha256"]
    assert downloads(settled_calls(sandbox)) == [
        f"/_downloads/actions-runner-linux-{ARCH}-2.335.0.tar.gz"
    ]


# -- air-gapped hosts ---------------------------------------------------------------------


def test_an_operator_seeded_cache_needs_no_github(cache_dir: Path, tmp_path: Path) -> None:
    place(cache_dir, "2.335.0")
    seeded = place(cache_dir, "2.336.0")
    cache = make_cache(cache_dir, None)

    pinned = cache.ensure(SCOPE, "2.335.0")
    latest = cache.ensure(SCOPE, "latest")
    cache.extract(latest, tmp_path / "ci-1")

    assert pinned.version == "2.335.0"
    assert (latest.version, latest.path) == ("2.336.0", seeded)
    assert installed_version(tmp_path / "ci-1") == "2.336.0"


def test_a_seeded_version_makes_no_call_even_with_github_configured(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    place(cache_dir, "2.329.0")

    tarball = make_cache(cache_dir, github).ensure(SCOPE, "2.329.0")

    assert tarball.version == "2.329.0"
    assert settled_calls(sandbox) == []


def test_latest_falls_back_to_the_newest_cached_when_github_is_unreachable(
    own_sandbox: Sandbox, cache_dir: Path, tmp_path: Path
) -> None:
    place(cache_dir, "2.334.0")
    place(cache_dir, "2.335.0")
    settings = settings_for(own_sandbox)
    own_sandbox.stop()
    github = GitHub.from_settings(settings, tmp_path / "state", FAST_API)

    tarball = make_cache(cache_dir, github).ensure(SCOPE, "latest")

    assert tarball.version == "2.335.0"


def test_a_tarball_without_its_checksum_file_is_not_used(cache_dir: Path) -> None:
    place(cache_dir, "2.335.0")
    os.unlink(cache_dir / f"actions-runner-linux-{ARCH}-2.335.0.tar.gz.sha256")

    with pytest.raises(DistributionError, match=r"copy .*2\.335\.0\.tar\.gz and .*\.sha256 there"):
        make_cache(cache_dir, None).ensure(SCOPE, "2.335.0")


def test_a_tarball_that_fails_its_checksum_is_replaced_by_a_download(
    sandbox: Sandbox, github: GitHub, cache_dir: Path
) -> None:
    bad = place(cache_dir, "2.335.0", checksum="0" * 64)

    tarball = make_cache(cache_dir, github).ensure(SCOPE, "2.335.0")

    assert tarball.path == bad
    assert tarball.sha256 == hashlib.sha256(bad.read_bytes()).hexdigest()
    assert Path(f"{bad}.sha256").read_text().split()[0] == tarball.sha256
    assert len(downloads(settled_calls(sandbox))) == 1


def test_a_tarball_damaged_after_ensure_is_not_extracted_and_is_dropped(
    github: GitHub, cache_dir: Path, tmp_path: Path
) -> None:
    cache = make_cache(cache_dir, github)
    tarball = cache.ensure(SCOPE, "2.335.0")
    data = bytearray(tarball.path.read_bytes())
    data[100] ^= 0xFF
    tarball.path.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatch, match="removed it"):
        cache.extract(tarball, tmp_path / "ci-1")

    assert not (tmp_path / "ci-1").exists()
    assert cache_files(cache_dir) == []
    assert make_cache(cache_dir, github).ensure(SCOPE, "2.335.0").path.exists()


# -- pruning ------------------------------------------------------------------------------


def test_prune_keeps_the_newest_versions(cache_dir: Path) -> None:
    for version in ("2.329.0", "2.334.0", "2.335.0", "2.336.0"):
        place(cache_dir, version)
    stale = cache_dir / f".actions-runner-linux-{ARCH}-2.336.0.tar.gz.abc123.part"
    stale.write_bytes(b"half a download")

    removed = make_cache(cache_dir, None, keep=2, grace=0).prune()

    kept = [f"actions-runner-linux-{ARCH}-{v}.tar.gz" for v in ("2.335.0", "2.336.0")]
    assert cache_files(cache_dir) == sorted([*kept, *(f"{name}.sha256" for name in kept)])
    assert sorted(removed) == sorted(
        [
            stale.name,
            f"actions-runner-linux-{ARCH}-2.329.0.tar.gz",
            f"actions-runner-linux-{ARCH}-2.334.0.tar.gz",
        ]
    )


def test_prune_spares_versions_in_use(cache_dir: Path) -> None:
    for version in ("2.329.0", "2.334.0", "2.335.0"):
        place(cache_dir, version)
    cache = make_cache(cache_dir, None, keep=1)
    cache.ensure(SCOPE, "2.329.0")  # a slot pinned to an old version just used it
    busy_lock = cache_dir / f".actions-runner-linux-{ARCH}-2.334.0.tar.gz.lock"

    with file_lock(busy_lock, shared=True):  # and another process is unpacking this one
        assert make_cache(cache_dir, None, keep=1).prune() == []

    assert cache.cached_versions() == ["2.335.0", "2.334.0", "2.329.0"]


def test_a_download_prunes_what_is_beyond_keep(github: GitHub, cache_dir: Path) -> None:
    place(cache_dir, "2.329.0")
    place(cache_dir, "2.334.0")

    cache = make_cache(cache_dir, github, keep=2)
    cache.ensure(SCOPE, "latest")

    assert cache.cached_versions() == ["2.336.0", "2.334.0"]


def test_keep_must_be_at_least_one(cache_dir: Path) -> None:
    with pytest.raises(DistributionError, match="keep at least 1"):
        RunnerCache(cache_dir, keep=0)


def test_a_cache_dir_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where a folder should be")

    with pytest.raises(DistributionError, match=r"cannot create the runner cache .*blocked/cache"):
        make_cache(tmp_path / "blocked" / "cache", None).ensure(SCOPE, "2.336.0")
