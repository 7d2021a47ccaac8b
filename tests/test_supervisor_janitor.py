"""The janitor against the loopback GitHub: ghost cleanup and update checks."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerctl.config import load_config
from runnerctl.github import GitHub
from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import sandbox  # noqa: F401 - the fixture
from runnerctl.scope import Scope
from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.janitor import Janitor, is_ghost, version_key

REPO = Scope("repo", "octo/app")


def write_config(folder: Path, double: Sandbox, runners: str) -> Any:
    path = folder / "pool.yaml"
    path.write_text(
        f"github:\n  server_url: {double.server_url}\n  api_url: {double.api_url}\n"
        f"  releases_url: {double.api_url}/repos/actions/runner/releases\n"
        f"  app_id: {double.app_id}\n  installation_id: {double.installation_id}\n"
        f"  private_key_file: {double.private_key_file}\n"
        f"manager:\n  state_dir: {folder / 'state'}\n  cache_dir: {folder / 'cache'}\n"
        f"runners:\n{runners}"
    )
    return load_config(path, environ={})


@pytest.fixture
def pipe() -> Iterator[tuple[msg.Channel, msg.Channel]]:
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    pair = (msg.Channel(ours), msg.Channel(theirs))
    yield pair
    for end in pair:
        end.close()


def received(channel: msg.Channel) -> list[msg.Message]:
    return channel.receive_ready() if channel.connection.poll(0) else []


def test_sweep_deletes_only_offline_ghosts_of_pool_names(
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
    pipe: tuple[msg.Channel, msg.Channel],
) -> None:
    config = write_config(
        tmp_path, sandbox, "  - name_prefix: ci\n    count: 3\n    repo: octo/app\n"
    )
    github = GitHub.from_settings(config.github, state_dir=tmp_path / "state")
    ids = {
        name: github.jit_config(REPO, name, ["self-hosted"]).runner.id
        for name in ("ci-1", "ci-2", "ci-3", "other-1")
    }
    janitor, root_end = Janitor(config, github, pipe[1]), pipe[0]
    # ci-1 runs another runner than its old registration; ci-2 runs its own; ci-3 is
    # between runners (no id known yet).
    root_end.send(msg.Pool(runners={"ci-1": ids["ci-1"] + 1000, "ci-2": ids["ci-2"], "ci-3": None}))
    assert janitor.take_messages()

    janitor.sweep()

    left = {runner.name for runner in github.list_runners(REPO)}
    assert left == {"ci-2", "ci-3", "other-1"}


def test_a_busy_or_online_registration_is_never_a_ghost() -> None:
    class Seen:
        def __init__(self, id: int, status: str, busy: bool) -> None:
            self.id, self.name, self.status, self.busy = id, "ci-1", status, busy

    current = {"ci-1": 5}
    assert is_ghost(Seen(4, "offline", False), current)
    assert not is_ghost(Seen(4, "online", False), current)
    assert not is_ghost(Seen(4, "offline", True), current)
    assert not is_ghost(Seen(5, "offline", False), current)
    assert not is_ghost(Seen(4, "offline", False), {})


def test_update_check_reports_latest_and_warns_about_old_pins(
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
    pipe: tuple[msg.Channel, msg.Channel],
) -> None:
    config = write_config(
        tmp_path,
        sandbox,
        "  - name: follow\n    repo: octo/app\n"
        "  - name: pinned\n    repo: octo/app\n    version: 2.329.0\n"
        "  - name: current\n    repo: octo/app\n    version: 2.336.0\n",
    )
    github = GitHub.from_settings(config.github, state_dir=tmp_path / "state")
    janitor, root_end = Janitor(config, github, pipe[1]), pipe[0]

    janitor.check_updates()

    messages = received(root_end)
    assert msg.LatestVersion(version="2.336.0") in messages
    notices = [m for m in messages if isinstance(m, msg.Notice)]
    assert [n.slot for n in notices] == ["pinned"]
    assert "2.329.0 is behind 2.336.0" in notices[0].text


def test_the_janitor_ends_on_stop_and_on_a_dead_root(
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
    pipe: tuple[msg.Channel, msg.Channel],
) -> None:
    config = write_config(tmp_path, sandbox, "  - name: a\n    repo: octo/app\n")
    github = GitHub.from_settings(config.github, state_dir=tmp_path / "state")
    janitor = Janitor(config, github, pipe[1], first_sweep_delay=3600)
    janitor.next_check = janitor.clock() + 3600
    pipe[0].send(msg.Stop(mode="now"))
    assert janitor.run() == 0

    pipe[0].close()
    assert janitor.run() == 0


def test_versions_compare_as_numbers() -> None:
    assert version_key("2.336.0") > version_key("2.99.0") > version_key("garbage")


def test_sweep_takes_the_latest_pool_after_listing(
    sandbox: Sandbox,  # noqa: F811
    tmp_path: Path,
    pipe: tuple[msg.Channel, msg.Channel],
) -> None:
    config = write_config(tmp_path, sandbox, "  - name: ci-1\n    repo: octo/app\n")
    github = GitHub.from_settings(config.github, state_dir=tmp_path / "state")
    fresh = github.jit_config(REPO, "ci-1", ["self-hosted"]).runner.id
    janitor, root_end = Janitor(config, github, pipe[1]), pipe[0]
    root_end.send(msg.Pool(runners={"ci-1": fresh + 1}))  # an older runner of the slot
    assert janitor.take_messages()
    # Meanwhile the slot moved on: it is registering the runner just created.
    root_end.send(msg.Pool(runners={"ci-1": None}))

    janitor.sweep()

    assert [runner.id for runner in github.list_runners(REPO)] == [fresh]
    assert janitor.pool == {"ci-1": None}
