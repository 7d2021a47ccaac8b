"""The stand-in runner against the loopback GitHub: register, listen, run jobs, stop.

Every test unpacks a real tarball into its own folder, starts real processes in their own
process groups (killed afterwards whatever happens), and talks real HTTP to a Sandbox.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.tarballs import LATEST, VERSIONS, build_tarball
from tests.processes import alive, wait_for
from tests.sandbox.test_standin_support import (
    Started,
    Starter,
    children_of,
    cmdline,
    environ_of,
    find_listener,
    github,
    read_runner_file,
    run,
    runner_env,
    unpack,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

REPO = "octo/app"
CONFIG_FILES = (".runner", ".credentials", ".credentials_rsaparams")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(repos=[REPO], root=tmp_path / "sandbox") as double:
        yield double


def rest(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    return github(sandbox.api_url, sandbox.token, method, path, body)


def register(
    sandbox: Sandbox, root: Path, name: str, *flags: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """config.sh with a fresh registration token passed through the environment."""
    token = rest(sandbox, "POST", f"/repos/{REPO}/actions/runners/registration-token")["token"]
    argv = ["./config.sh", "--unattended", "--url", f"{sandbox.server_url}/{REPO}"]
    argv += ["--name", name, *flags]
    return run(argv, root, runner_env(ACTIONS_RUNNER_INPUT_TOKEN=token, **env))


def registered(sandbox: Sandbox, root: Path, name: str, *flags: str) -> Path:
    result = register(sandbox, root, name, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def runner_named(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    return next((entry for entry in sandbox.runners() if entry["name"] == name), None)


def wait_online(sandbox: Sandbox, name: str, timeout: float = 30) -> dict[str, Any]:
    def online() -> dict[str, Any] | None:
        entry = runner_named(sandbox, name)
        return entry if entry and entry["status"] == "online" else None

    return wait_for(online, timeout=timeout)


def wait_for_worker(listener: int, timeout: float = 30) -> int:
    def worker() -> int | None:
        for pid in children_of(listener):
            try:
                if any(part.endswith("bin/Runner.Worker") for part in cmdline(pid)):
                    return pid
            except OSError:
                continue
        return None

    return wait_for(worker, timeout=timeout)


def listen(start: Starter, root: Path, **env: str) -> Started:
    """bin/Runner.Listener run, started directly so its own exit code is visible."""
    listener = start(["bin/Runner.Listener", "run"], root, runner_env(**env))
    listener.wait_for_output("Listening for Jobs")
    return listener


# -- the two ways to register ------------------------------------------------------------


def test_token_runner_takes_one_job_and_disappears(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "eph-1", "--ephemeral", "--labels", "gpu")
    settings = read_runner_file(runner_dir / ".runner")
    assert settings["agentName"] == "eph-1" and settings["ephemeral"] is True
    assert "disableUpdate" not in settings  # defaults are left out
    assert (runner_dir / ".runner").read_bytes().startswith(b"\xef\xbb\xbf")
    assert oct((runner_dir / ".credentials_rsaparams").stat().st_mode & 0o777) == "0o600"
    (runner_dir / ".env").write_text("FROM_DOT_ENV=yes\n")
    entry = runner_named(sandbox, "eph-1")
    assert entry is not None
    assert [label["name"] for label in entry["labels"]] == ["self-hosted", "Linux", "X64", "gpu"]

    runner = start(
        ["./run.sh"],
        runner_dir,
        runner_env(ACTIONS_RUNNER_INPUT_TOKEN="must-not-leak", ACTIONS_RUNNER_INPUT_X="1"),
    )
    wait_online(sandbox, "eph-1")
    job = sandbox.enqueue_job(["self-hosted", "gpu"], duration=2, name="build")
    sandbox.wait_for_job(job["id"], "running", timeout=30)
    listener = wait_for(lambda: find_listener(runner.pid), timeout=10)
    worker = wait_for_worker(listener)
    worker_env = environ_of(worker)
    assert not [key for key in worker_env if key.upper().startswith("ACTIONS_RUNNER_INPUT_")]
    assert worker_env["FROM_DOT_ENV"] == "yes"

    assert sandbox.wait_for_job(job["id"], "succeeded", timeout=30)["runner"] == "eph-1"
    assert runner.wait(30) == 0
    output = runner.output()
    assert "Current runner version: '2.336.0'" in output
    assert "Running job: build" in output
    assert "Job build completed with result: Succeeded" in output
    assert runner_named(sandbox, "eph-1") is None
    assert not any((runner_dir / name).exists() for name in CONFIG_FILES)
    assert not alive(worker)


def test_jit_runner_takes_one_job_and_disappears(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    body = {"name": "jit-1", "runner_group_id": 1, "labels": ["self-hosted", "jit"]}
    config = rest(sandbox, "POST", f"/repos/{REPO}/actions/runners/generate-jitconfig", body)
    runner = start(
        ["./run.sh"],
        runner_dir,
        runner_env(ACTIONS_RUNNER_INPUT_JITCONFIG=config["encoded_jit_config"]),
    )
    wait_online(sandbox, "jit-1")
    listener = wait_for(lambda: find_listener(runner.pid), timeout=10)
    assert config["encoded_jit_config"] not in " ".join(cmdline(listener))
    job = sandbox.enqueue_job(["jit"], duration=0.5, name="lint")
    sandbox.wait_for_job(job["id"], "succeeded", timeout=30)
    assert runner.wait(30) == 0
    assert "Job lint completed with result: Succeeded" in runner.output()
    assert runner_named(sandbox, "jit-1") is None
    assert not any((runner_dir / name).exists() for name in CONFIG_FILES)


def test_taken_name_fails_without_replace(
    sandbox: Sandbox, runner_dir: Path, tmp_path: Path, latest_tarball: Path
) -> None:
    registered(sandbox, runner_dir, "same")
    other = unpack(latest_tarball, tmp_path / "other")
    refused = register(sandbox, other, "same")
    assert refused.returncode == 1
    assert "A runner exists with the same name" in refused.stderr
    assert not (other / ".runner").exists()
    replaced = register(sandbox, other, "same", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert read_runner_file(other / ".runner")["agentId"] == runner_named(sandbox, "same")["id"]


def test_unknown_runner_group_and_bad_token_fail(sandbox: Sandbox, runner_dir: Path) -> None:
    url = f"{sandbox.server_url}/octo"
    token = rest(sandbox, "POST", "/orgs/octo/actions/runners/registration-token")["token"]
    argv = ["./config.sh", "--unattended", "--url", url, "--token", token]
    group = run([*argv, "--runnergroup", "gpus"], runner_dir)
    assert group.returncode == 1
    assert 'Could not find any self-hosted runner group named "gpus"' in group.stderr
    bad = run(["./config.sh", "--unattended", "--url", url, "--token", "nope"], runner_dir)
    assert bad.returncode == 1
    assert "NotFound" in bad.stderr
    assert not (runner_dir / ".runner").exists()


def test_remove_deregisters(sandbox: Sandbox, runner_dir: Path) -> None:
    registered(sandbox, runner_dir, "gone-soon")
    token = rest(sandbox, "POST", f"/repos/{REPO}/actions/runners/remove-token")["token"]
    result = run(
        ["./config.sh", "remove"], runner_dir, runner_env(ACTIONS_RUNNER_INPUT_TOKEN=token)
    )
    assert result.returncode == 0, result.stderr
    assert runner_named(sandbox, "gone-soon") is None
    assert not any((runner_dir / name).exists() for name in CONFIG_FILES)


# -- stopping ----------------------------------------------------------------------------


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_job_cancels_it_and_exits_0(
    number: signal.Signals, sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "stopper")
    listener = listen(start, runner_dir)
    job = sandbox.enqueue_job(["self-hosted"], duration=60, name="long")
    sandbox.wait_for_job(job["id"], "running", timeout=30)
    worker = wait_for_worker(listener.pid)
    listener.signal(number)
    assert listener.wait(35) == 0
    assert sandbox.job(job["id"])["status"] == "cancelled"
    assert "Job long completed with result: Canceled" in listener.output()
    assert not alive(worker)
    entry = runner_named(sandbox, "stopper")
    assert entry is not None and entry["session"] is False  # still registered, no session
    assert (runner_dir / ".runner").exists()


def test_cancelled_job_leaves_runner_listening(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "keeps-going")
    listener = listen(start, runner_dir)
    job = sandbox.enqueue_job(["self-hosted"], duration=60, name="doomed")
    sandbox.wait_for_job(job["id"], "running", timeout=30)
    wait_for_worker(listener.pid)
    sandbox.cancel_job(job["id"])
    sandbox.wait_for_job(job["id"], "cancelled", timeout=30)
    second = sandbox.enqueue_job(["self-hosted"], duration=0, name="next")
    sandbox.wait_for_job(second["id"], "succeeded", timeout=30)
    assert "Job doomed completed with result: Canceled" in listener.output()
    assert listener.process.poll() is None


def test_killed_runner_goes_offline_and_its_job_is_lost(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    sandbox.configure(offline_after=1)
    registered(sandbox, runner_dir, "victim")
    listener = listen(start, runner_dir)
    job = sandbox.enqueue_job(["self-hosted"], duration=60)
    sandbox.wait_for_job(job["id"], "running", timeout=30)
    worker = wait_for_worker(listener.pid)
    listener.kill_group()
    wait_for(lambda: runner_named(sandbox, "victim")["status"] == "offline", timeout=30)
    assert sandbox.wait_for_job(job["id"], "lost", timeout=30)["status"] == "lost"
    wait_for(lambda: not alive(worker), timeout=10)


def test_runner_deleted_on_server_deletes_its_files(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "deleted")
    listener = listen(start, runner_dir)
    runner_id = wait_online(sandbox, "deleted")["id"]
    rest(sandbox, "DELETE", f"/repos/{REPO}/actions/runners/{runner_id}")
    assert listener.wait(30) == 0
    assert not any((runner_dir / name).exists() for name in CONFIG_FILES)


def test_exit_message_sets_the_exit_code(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "crasher")
    listener = listen(start, runner_dir)
    sandbox.force_exit(wait_online(sandbox, "crasher")["id"], 2)
    assert listener.wait(30) == 2


# -- exit codes from the session ---------------------------------------------------------


def test_second_listener_gets_session_conflict(
    sandbox: Sandbox, runner_dir: Path, start: Starter, tmp_path: Path
) -> None:
    registered(sandbox, runner_dir, "twin")
    listen(start, runner_dir)
    copy = tmp_path / "copy"
    shutil.copytree(runner_dir, copy, symlinks=True)
    second = run(["bin/Runner.Listener", "run"], copy)
    assert second.returncode == 5
    assert "A session for this runner already exists" in second.stderr


@pytest.mark.parametrize(
    ("variable", "listener_code", "run_sh_code"),
    [(None, 1, 0), ("true", 7, 0), ("1", 7, 7)],
)
def test_deprecated_version_exit_codes(
    variable: str | None,
    listener_code: int,
    run_sh_code: int,
    sandbox: Sandbox,
    runner_dir: Path,
) -> None:
    registered(sandbox, runner_dir, "old-timer")
    sandbox.configure(deprecated_versions=[LATEST])
    env = runner_env()
    if variable is not None:
        env["ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE"] = variable
    listener = run(["bin/Runner.Listener", "run"], runner_dir, env)
    assert listener.returncode == listener_code
    assert "deprecated" in listener.stderr
    assert run(["./run.sh"], runner_dir, env).returncode == run_sh_code


# -- wrappers and update -----------------------------------------------------------------


def test_run_sh_trapping_turns_term_into_int_for_the_group(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "trapped")
    runner = start(["./run.sh"], runner_dir, runner_env(RUNNER_MANUALLY_TRAP_SIG="1"))
    runner.wait_for_output("Listening for Jobs")
    job = sandbox.enqueue_job(["self-hosted"], duration=60, name="interrupted")
    sandbox.wait_for_job(job["id"], "running", timeout=30)
    listener = wait_for(lambda: find_listener(runner.pid), timeout=10)
    worker = wait_for_worker(listener)
    assert os.getpgid(listener) != os.getpgid(runner.pid)  # the helper runs as its own job
    runner.signal(signal.SIGTERM)
    assert runner.wait(30) == 0
    assert sandbox.job(job["id"])["status"] == "cancelled"
    assert "Exiting runner..." in runner.output()
    wait_for(lambda: not alive(worker), timeout=10)


def test_update_swaps_bin_and_run_sh_restarts_the_new_version(
    sandbox: Sandbox, tmp_path: Path, start: Starter
) -> None:
    old = VERSIONS[-2]
    root = unpack(build_tarball(old, "x64", tmp_path / "tarballs"), tmp_path / "old-runner")
    registered(sandbox, root, "updater")
    runner = start(["./run.sh"], root)
    runner_id = wait_online(sandbox, "updater")["id"]
    assert runner_named(sandbox, "updater")["version"] == old
    sandbox.request_update(runner_id, LATEST)

    def updated() -> bool:
        entry = runner_named(sandbox, "updater")
        return bool(entry and entry["version"] == LATEST and entry["status"] == "online")

    wait_for(updated, timeout=60)
    assert os.readlink(root / "bin") == f"bin.{LATEST}"
    assert (root / f"bin.{old}" / "Runner.Listener").exists()
    assert not (root / "update.finished").exists()  # run-helper.sh consumed it
    assert run(["bin/Runner.Listener", "--version"], root).stdout == f"{LATEST}\n"
    assert "Runner listener exit because of updating" in runner.output()
    assert list((root / "_diag").glob("SelfUpdate-*.log.succeed"))


def test_disableupdate_runner_is_never_told_to_update(sandbox: Sandbox, runner_dir: Path) -> None:
    registered(sandbox, runner_dir, "frozen", "--disableupdate")
    assert read_runner_file(runner_dir / ".runner")["disableUpdate"] is True
    entry = runner_named(sandbox, "frozen")
    assert entry is not None and entry["disable_update"] is True


def test_ephemeral_runner_exits_4_for_an_update(
    sandbox: Sandbox, tmp_path: Path, start: Starter
) -> None:
    old = VERSIONS[0]
    root = unpack(build_tarball(old, "x64", tmp_path / "tarballs"), tmp_path / "old-runner")
    registered(sandbox, root, "eph-update", "--ephemeral")
    listener = listen(start, root)
    sandbox.request_update(wait_online(sandbox, "eph-update")["id"], LATEST)
    assert listener.wait(30) == 4
    # _update.sh outlives the listener and finishes the swap on its own.
    wait_for(lambda: (root / "update.finished").exists(), timeout=30)
    assert os.readlink(root / "bin") == f"bin.{LATEST}"
    assert run(["bin/Runner.Listener", "--version"], root).stdout == f"{LATEST}\n"


def test_run_sh_restarts_after_retryable_exit_and_stops_otherwise(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "looper")
    runner = start(["./run.sh"], runner_dir)
    runner_id = wait_online(sandbox, "looper")["id"]
    first = find_listener(runner.pid)
    sandbox.force_exit(runner_id, 2)
    runner.wait_for_output("Restarting runner...")
    # run-helper.sh sleeps 5 s before the next round.
    wait_for(lambda: find_listener(runner.pid) not in (None, first), timeout=30)
    wait_online(sandbox, "looper")
    sandbox.force_exit(runner_id, 1)
    assert runner.wait(30) == 0  # run.sh hides the terminated error
    assert "exit with terminated error" in runner.output()


def test_once_takes_one_job_and_keeps_the_registration(
    sandbox: Sandbox, runner_dir: Path, start: Starter
) -> None:
    registered(sandbox, runner_dir, "once")
    listener = start(["bin/Runner.Listener", "run", "--once"], runner_dir)
    listener.wait_for_output("Listening for Jobs")
    job = sandbox.enqueue_job(["self-hosted"], duration=0)
    sandbox.wait_for_job(job["id"], "succeeded", timeout=30)
    assert listener.wait(30) == 0
    assert "--once" in listener.output()
    assert runner_named(sandbox, "once") is not None
    assert (runner_dir / ".runner").exists()


def test_check_probes_the_api_with_the_pat(sandbox: Sandbox, runner_dir: Path) -> None:
    argv = ["bin/Runner.Listener", "--check", "--url", f"{sandbox.server_url}/{REPO}", "--pat"]
    good = run([*argv, sandbox.token], runner_dir)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "√ Check passed" in good.stdout
    bad = run([*argv, "ghp_wrong"], runner_dir)
    assert bad.returncode == 1
    assert "ghp_wrong" not in bad.stdout + bad.stderr


def test_invalid_labels_fall_back_to_defaults(sandbox: Sandbox, runner_dir: Path) -> None:
    registered(sandbox, runner_dir, "long-label", "--labels", "ok," + "x" * 257)
    entry = runner_named(sandbox, "long-label")
    assert entry is not None
    assert [label["name"] for label in entry["labels"]] == ["self-hosted", "Linux", "X64"]


def test_no_default_labels_from_the_environment(
    sandbox: Sandbox, runner_dir: Path, tmp_path: Path, latest_tarball: Path
) -> None:
    # The name holds dashes, so only an execve environment (not `export`) can carry it.
    flag = {"ACTIONS_RUNNER_INPUT_NO-DEFAULT-LABELS": "true"}
    refused = register(sandbox, runner_dir, "bare", **flag)
    assert refused.returncode == 1
    assert "--no-default-labels" in refused.stderr
    other = unpack(latest_tarball, tmp_path / "other")
    accepted = register(sandbox, other, "bare", "--labels", "only-this", **flag)
    assert accepted.returncode == 0, accepted.stderr
    entry = runner_named(sandbox, "bare")
    assert entry is not None
    assert [label["name"] for label in entry["labels"]] == ["only-this"]


def test_pat_registration_and_removal_use_the_ghes_api_form(
    sandbox: Sandbox, runner_dir: Path
) -> None:
    url = f"{sandbox.server_url}/{REPO}"
    env = runner_env(ACTIONS_RUNNER_INPUT_PAT=sandbox.token)
    added = run(["./config.sh", "--unattended", "--url", url, "--name", "by-pat"], runner_dir, env)
    assert added.returncode == 0, added.stderr
    removed = run(["./config.sh", "remove"], runner_dir, env)
    assert removed.returncode == 0, removed.stderr
    assert runner_named(sandbox, "by-pat") is None
    calls = [(call["method"], call["path"], call["credential"]) for call in sandbox.calls()]
    prefix = f"/api/v3/repos/{REPO}/actions/runners"
    assert calls == [
        ("POST", f"{prefix}/registration-token", "token"),
        ("POST", "/api/v3/actions/runner-registration", "remote-auth"),
        ("POST", "/_services/pipelines/agents", "agent"),
        ("POST", f"{prefix}/remove-token", "token"),
        ("POST", "/api/v3/actions/runner-registration", "remote-auth"),
        ("DELETE", "/_services/pipelines/agents/1", "agent"),
    ]


def test_interactive_configure_reads_answers_from_the_terminal(
    sandbox: Sandbox, runner_dir: Path
) -> None:
    token = rest(sandbox, "POST", f"/repos/{REPO}/actions/runners/registration-token")["token"]
    # url, token, name, labels (Enter: none), work folder (Enter: _work)
    answers = f"{sandbox.server_url}/{REPO}\n{token}\nasked\n\n\n"
    result = subprocess.run(
        ["./config.sh"],
        cwd=runner_dir,
        env=runner_env(),
        input=answers,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Enter the name of runner:" in result.stdout
    settings = read_runner_file(runner_dir / ".runner")
    assert (settings["agentName"], settings["workFolder"]) == ("asked", "_work")
    assert runner_named(sandbox, "asked") is not None
