"""The supervisor tree for real: ``runnerctl-manager run`` with stand-in runners.

Every test starts the real command (root, workers, janitor, listeners) against the
loopback GitHub and drives it with real signals and config edits. Each cleans up
every process by group and by folder, even when it fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import sandbox  # noqa: F401 - the fixture
from tests.integration.tree import Manager, cmdline, eventually
from tests.processes import alive, processes_under

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def pool(count: int, prefix: str = "ci", **settings: object) -> str:
    """A runners item: ``count`` runners named ``prefix-N`` in octo/app."""
    lines = [f"  - name_prefix: {prefix}\n    count: {count}\n    repo: octo/app\n"]
    lines += [f"    {key}: {str(value).lower()}\n" for key, value in settings.items()]
    return "".join(lines)


def single(name: str, **settings: object) -> str:
    lines = [f"  - name: {name}\n    repo: octo/app\n"]
    lines += [f"    {key}: {str(value).lower()}\n" for key, value in settings.items()]
    return "".join(lines)


@pytest.fixture
def manager(sandbox: Sandbox, tmp_path: Path) -> Iterator[Manager]:  # noqa: F811
    sandbox.configure(poll_seconds=0.2, offline_after=3)
    made = Manager(tmp_path, sandbox)
    try:
        yield made
    finally:
        made.kill_everything()


def one_listener_each(manager: Manager, names: list[str]) -> bool:
    listeners = manager.listeners()
    return all(len(listeners.get(name, [])) == 1 for name in names)


def test_a_pool_comes_up_holds_its_count_and_names_itself(manager: Manager) -> None:
    manager.write(pool(2, daemonize=False))
    manager.start()

    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    assert cmdline(manager.pid) == f"runnerctl-manager: root {manager.config} (2 slots)"
    worker = manager.slots()["ci-1"]["worker_pid"]
    assert cmdline(worker) == "runnerctl-manager: worker ci-1 [idle]"
    first = {name: slot["runner_pid"] for name, slot in manager.slots().items()}
    online = manager.online()
    assert {n: s["runner_id"] for n, s in manager.slots().items()} == {
        name: online[name]["id"] for name in ("ci-1", "ci-2")
    }

    jobs = [manager.sandbox.enqueue_job(["self-hosted"], duration=0.5) for _ in range(2)]
    for job in jobs:
        manager.sandbox.wait_for_job(job["id"], "succeeded", timeout=60)

    # Ephemeral runners: each job's runner is followed by a fresh one; the count holds.
    eventually(lambda: sum(s["jobs_done"] for s in manager.slots().values()) == 2)
    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    again = {name: slot["runner_pid"] for name, slot in manager.slots().items()}
    assert set(again.values()).isdisjoint(first.values())
    assert one_listener_each(manager, ["ci-1", "ci-2"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_a_runner_that_exits_is_followed_by_a_new_one(manager: Manager) -> None:
    port = free_port()
    manager.write(
        pool(1, ephemeral=False, daemonize=False), manager=f"  metrics_address: 127.0.0.1:{port}\n"
    )
    manager.start()
    eventually(lambda: manager.all_in("idle", count=1) and manager.online())
    before = manager.slots()["ci-1"]["runner_pid"]

    manager.sandbox.force_exit(manager.online()["ci-1"]["id"], 2)

    eventually(lambda: manager.slots()["ci-1"]["runner_pid"] not in (None, before))
    eventually(lambda: manager.states() == {"ci-1": "idle"} and manager.online())
    slot = manager.slots()["ci-1"]
    assert slot["last_exit"] == 2
    assert slot["restarts"] >= 1
    assert not alive(before)
    assert 'runnerctl_runner_exits_total{code="2",slot="ci-1"} 1.0' in scrape(port)


def test_a_killed_worker_is_restarted_and_adopts_its_runner(manager: Manager) -> None:
    manager.write(pool(2, ephemeral=False, daemonize=False))
    manager.start()
    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    before = manager.slots()

    os.kill(before["ci-1"]["worker_pid"], signal.SIGKILL)

    eventually(lambda: manager.slots()["ci-1"]["worker_pid"] != before["ci-1"]["worker_pid"])
    eventually(lambda: manager.states()["ci-1"] == "idle")
    after = manager.slots()
    assert after["ci-1"]["runner_pid"] == before["ci-1"]["runner_pid"]  # adopted
    assert after["ci-2"]["worker_pid"] == before["ci-2"]["worker_pid"]  # one-for-one
    assert one_listener_each(manager, ["ci-1", "ci-2"])
    assert "adopted" in after["ci-1"]["reason"]


def test_a_new_root_adopts_daemonized_runners_and_their_jobs_finish(
    manager: Manager,
) -> None:
    manager.write(pool(2, ephemeral=False, daemonize=True))
    manager.start()
    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    job = manager.sandbox.enqueue_job(["self-hosted"], duration=6)
    eventually(lambda: "busy" in manager.states().values())
    before = manager.slots()
    workers = [slot["worker_pid"] for slot in before.values()]

    os.kill(manager.pid, signal.SIGKILL)
    manager.wait_exit()
    eventually(lambda: not any(alive(pid) for pid in workers))
    assert all(alive(slot["runner_pid"]) for slot in before.values())

    manager.start()
    eventually(lambda: manager.status().get("root", {}).get("pid") == manager.pid)
    eventually(lambda: manager.all_in("idle", "busy", count=2))
    after = manager.slots()
    assert {n: s["runner_pid"] for n, s in after.items()} == {
        n: s["runner_pid"] for n, s in before.items()
    }
    assert manager.sandbox.wait_for_job(job["id"], "succeeded", timeout=60)
    assert one_listener_each(manager, ["ci-1", "ci-2"])


def test_a_slot_removed_while_no_root_ran_is_retired_by_the_next_root(
    manager: Manager,
) -> None:
    kept = single("keep", ephemeral=False, daemonize=True)
    other_repo = "  - name: gone\n    repo: octo/other\n    ephemeral: false\n    daemonize: true\n"
    manager.write(kept + other_repo)
    manager.start()
    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    before = manager.slots()
    workers = [slot["worker_pid"] for slot in before.values()]

    os.kill(manager.pid, signal.SIGKILL)
    manager.wait_exit()
    eventually(lambda: not any(alive(pid) for pid in workers))
    assert alive(before["gone"]["runner_pid"]), "a daemonized runner outlives its root"
    manager.write(kept)  # the slot leaves the config while no root runs
    manager.start()

    # The new root finds the orphan from the slot record its worker left, and retires it
    # in its own repository (not keep's): the listener stops and the registration goes.
    eventually(lambda: not alive(before["gone"]["runner_pid"]))
    eventually(lambda: "gone" not in manager.registered())
    eventually(lambda: set(manager.states()) == {"keep"})
    assert manager.slots()["keep"]["runner_pid"] == before["keep"]["runner_pid"]
    assert "leftover: gone is no longer in the config" in manager.log.read_text()


def test_scale_down_and_removal_wait_for_running_jobs(manager: Manager) -> None:
    manager.write(pool(2, daemonize=False) + single("solo", daemonize=False))
    manager.start()
    eventually(lambda: manager.all_in("idle", count=3) and len(manager.online()) == 3)
    jobs = [manager.sandbox.enqueue_job(["self-hosted"], duration=4) for _ in range(3)]
    eventually(lambda: manager.all_in("busy", count=3))

    manager.write(pool(1, daemonize=False))
    manager.signal(signal.SIGHUP)

    eventually(lambda: manager.states().get("ci-2") == manager.states().get("solo") == "draining")
    for job in jobs:
        assert manager.sandbox.wait_for_job(job["id"], "succeeded", timeout=60)
    eventually(lambda: set(manager.states()) == {"ci-1"})
    eventually(lambda: manager.registered() & {"ci-2", "solo"} == set())
    assert not manager.listeners().get("ci-2") and not manager.listeners().get("solo")
    eventually(lambda: manager.all_in("idle", count=1) and "ci-1" in manager.online())


def test_an_invalid_config_on_reload_is_ignored(manager: Manager) -> None:
    manager.write(pool(1, daemonize=False))
    manager.start()
    eventually(lambda: manager.all_in("idle", count=1) and manager.online())
    before = manager.slots()["ci-1"]

    manager.write(pool(1, daemonize=False) + "  - name: bad\n    repo: octo\n")
    manager.signal(signal.SIGHUP)

    eventually(lambda: manager.status()["root"]["config_error"])
    after = manager.slots()
    assert set(after) == {"ci-1"}
    assert (after["ci-1"]["worker_pid"], after["ci-1"]["runner_pid"]) == (
        before["worker_pid"],
        before["runner_pid"],
    )
    assert "config invalid: " in manager.log.read_text()


def test_sigterm_ends_everything_within_stop_timeout(manager: Manager) -> None:
    manager.write(pool(2, daemonize=False), manager="  stop_timeout: 8\n")
    manager.start()
    eventually(lambda: manager.all_in("idle", count=2) and len(manager.online()) == 2)
    job = manager.sandbox.enqueue_job(["self-hosted"], duration=120)
    eventually(lambda: sorted(manager.states().values()) == ["busy", "idle"])
    idle = [name for name, state in manager.states().items() if state == "idle"]

    started = time.monotonic()
    manager.signal(signal.SIGTERM)

    assert manager.wait_exit(timeout=30) == 0
    assert time.monotonic() - started < 8 + 2
    eventually(lambda: not processes_under(manager.folder), timeout=10)
    # The idle ephemeral runner never took a job: its registration is gone too.
    assert not set(idle) & manager.registered()
    assert manager.sandbox.job(job["id"])["status"] in ("cancelled", "lost")


def test_a_crash_looping_runner_backs_off(manager: Manager) -> None:
    manager.sandbox.configure(deprecated_versions=["2.335.0"])
    manager.write(single("flaky", ephemeral=False, daemonize=False, version="2.335.0"))
    manager.start()
    eventually(lambda: manager.states().get("flaky") == "backoff")

    manager.sandbox.clear_calls()
    window = 7.0
    time.sleep(window)  # a measured window: count the listener starts within it
    starts = [
        call
        for call in manager.sandbox.calls()
        if call["method"] == "POST" and call["path"].endswith("/sessions")
    ]
    # Backing off 1 s, 2 s, 4 s ... allows a few; a hot loop would show dozens.
    assert 1 <= len(starts) <= 4
    slot = manager.slots()["flaky"]
    assert slot["restarts"] >= 2
    assert manager.process is not None and manager.process.poll() is None


def test_status_command_and_metrics_show_every_slot(manager: Manager) -> None:
    port = free_port()
    manager.write(pool(2, daemonize=False), manager=f"  metrics_address: 127.0.0.1:{port}\n")
    manager.start()
    eventually(lambda: manager.all_in("idle", count=2))

    shown = subprocess.run(
        [sys.executable, "-m", "runnerctl.manager", "status", "--config", str(manager.config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()

    assert shown[0].startswith(f"root: pid {manager.pid}, running, config {manager.config}")
    rows = {line.split()[0]: line.split() for line in shown[4:]}
    assert rows["ci-1"][1] == "idle" and rows["ci-2"][1] == "idle"
    assert rows["ci-1"][2] == str(manager.slots()["ci-1"]["runner_pid"])

    scraped = scrape(port)
    assert 'runnerctl_slots{state="idle"} 2.0' in scraped
    assert 'runnerctl_jobs_completed_total{slot="ci-2"} 0.0' in scraped
    # Each worker registered its runner through GitHub and says so, with the budget left.
    samples = {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    for slot in ("ci-1", "ci-2"):
        assert samples[f"runnerctl_github_api_calls_total[('process', '{slot}')]"] >= 1
    assert 0 < samples["runnerctl_github_rate_limit_remaining[]"] <= 5000


def test_once_starts_missing_runners_and_retires_removed_ones(manager: Manager) -> None:
    manager.write(pool(1, daemonize=True) + single("solo", daemonize=True))
    env = {"PATH": os.environ["PATH"], "HOME": str(manager.folder), "RUNNER_ALLOW_RUNASROOT": "1"}

    def once() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runnerctl.manager", "once", "--config", str(manager.config)],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            cwd=manager.folder,
        )

    first = once()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started" in first.stdout and first.stdout.strip().endswith("every slot runs")
    eventually(lambda: {"ci-1", "solo"} <= set(manager.online()))

    second = once()
    assert second.returncode == 0
    assert second.stdout.count("running (pid") == 2
    assert one_listener_each(manager, ["ci-1", "solo"])

    manager.write(pool(1, daemonize=True))
    third = once()
    assert third.returncode == 0
    assert "solo  removed from config; stopped and deregistered" in third.stdout
    eventually(lambda: "solo" not in manager.registered())
    assert not manager.listeners().get("solo")
