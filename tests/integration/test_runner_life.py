"""One runner's life for real: the stand-in runner against the loopback GitHub.

Install from the verified cache, register (token and JIT), start, watch busy and idle
as events, stop now or drain, adopt after the parent dies, recover from stale files,
read every exit code, and remove, with real processes and real HTTP throughout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl import procfs
from runnerctl.errors import RunnerBusy, RunnerError
from runnerctl.runner import Busy, Idle, Online, pidfile
from runnerctl.runner.observe import worker_of
from runnerctl.runner.register import local_registration, local_runner_id
from runnerctl.sandbox import Sandbox
from tests.integration.runner_world import (
    MANAGER_ENV,
    REPO,
    SLOW,
    World,
    environ_of,
    events_until,
)
from tests.processes import alive, processes_under, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> Iterator[World]:
    made = World(sandbox, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.mark.parametrize("mode", ["token", "jit"])
def test_a_job_from_registration_to_removal(world: World, mode: str) -> None:
    runner = world.runner(world.slot(registration=mode))
    assert runner.install() == "2.336.0"
    registration = runner.register()
    assert registration.mode == mode and registration.runner_id is not None
    process = world.track(runner.start(registration))
    assert pidfile.read(runner.directory / "runner.pid") == pidfile.record(process.pid)
    events_until(process, Online)

    job = world.job(duration=1)
    busy = [e for e in events_until(process, Busy) if isinstance(e, Busy)]
    assert busy[0].job == f"job-{job}" and process.busy
    idle = [e for e in events_until(process, Idle) if isinstance(e, Idle)]
    assert idle == [Idle(f"job-{job}", "Succeeded")]
    assert world.sandbox.job(job)["status"] == "succeeded"
    assert world.sandbox.job(job)["runner"] == "ci-1"

    # JIT runners are ephemeral: one job, then they leave by themselves.
    ended = process.wait(SLOW) if mode == "jit" else process.stop(now=False, timeout=SLOW)
    assert ended is not None and ended.code == 0 and ended.action == "done"
    assert not (runner.directory / "runner.pid").exists()

    runner.remove()
    assert world.runner_named("ci-1") is None
    assert not (runner.directory / ".runner").exists()


def test_configure_arguments_and_labels(world: World) -> None:
    runner = world.runner(world.slot(labels=("gpu",)))
    runner.install()
    runner.register()
    data = local_registration(runner.directory)
    assert data is not None and data["agentName"] == "ci-1" and data["disableUpdate"] is True
    assert not data.get("ephemeral")
    [registered] = world.github.list_runners(REPO, name="ci-1")
    assert {"self-hosted", "linux", "gpu"} <= {label.lower() for label in registered.labels}


def test_ephemeral_token_runner_exits_after_one_job(world: World) -> None:
    runner = world.runner(world.slot(ephemeral=True, registration="token"))
    process = world.launch(runner)
    first = world.job(duration=0.5)
    ended = process.wait(SLOW)
    assert ended is not None and ended.code == 0 and ended.action == "done"
    assert world.sandbox.job(first)["status"] == "succeeded"
    assert not (runner.directory / ".runner").exists()
    wait_for(lambda: world.runner_named("ci-1") is None, timeout=SLOW)


def test_no_secret_on_any_command_line(world: World) -> None:
    """Sample every /proc/*/cmdline while registering and starting, in both modes."""
    seen: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in procfs.pids():
                seen.add(" ".join(procfs.command(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        token_runner = world.runner(world.slot("ci-token"))
        token_process = world.launch(token_runner)
        events_until(token_process, Online)
        jit_runner = world.runner(world.slot("ci-jit", registration="jit"))
        jit_runner.install()
        registration = jit_runner.register()
        jit_process = world.track(jit_runner.start(registration))
        events_until(jit_process, Online)
    finally:
        stop.set()
        sampler.join()

    token = world.github.registration_token(REPO).value.get_secret_value()
    assert registration.jit_config is not None
    jit_config = registration.jit_config.get_secret_value()
    assert jit_config not in repr(registration) and jit_config not in str(registration)
    assert any("configure" in line for line in seen), "the sampler missed config.sh"
    assert any("Runner.Listener run" in line for line in seen)
    leaks = [line for line in seen if token in line or jit_config in line]
    assert leaks == []
    for runner in (token_runner, jit_runner):
        log = (runner.directory / "runner.log").read_text()
        assert token not in log and jit_config not in log


def test_runner_environment_is_built_not_inherited(world: World) -> None:
    runner = world.runner(world.slot(registration="jit"))
    process = world.launch(runner)
    events_until(process, Online)
    env = environ_of(process.pid)
    for leaked in ("GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_ID", "NOTIFY_SOCKET"):
        assert leaked not in env
    assert "RUNNERCTL_CONFIG" not in env
    # (a pyenv shim between env and python3 may prepend its own folders to PATH)
    assert env["PATH"].endswith(MANAGER_ENV["PATH"]) and env["HOME"] and env["USER"]
    assert env["LANG"] == "C.UTF-8" and env["LC_TIME"] == "C.UTF-8" and env["TZ"] == "UTC"
    assert env["https_proxy"] == MANAGER_ENV["https_proxy"] and env["NO_PROXY"]
    assert env["RUNNER_ALLOW_RUNASROOT"] == "1" and env["SLOT_SETTING"] == "from-the-slot"
    manager_values = {MANAGER_ENV[key] for key in ("GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY")}
    assert not manager_values & set(env.values())

    # A job's worker sees neither the manager's credentials nor the JIT config.
    world.job(duration=3)
    events_until(process, Busy)
    worker = wait_for(lambda: worker_of(process.pid), timeout=SLOW)
    job_env = environ_of(worker)
    assert not any(key.startswith("ACTIONS_RUNNER_INPUT_") for key in job_env)
    assert "GITHUB_TOKEN" not in job_env and job_env["SLOT_SETTING"] == "from-the-slot"


def test_stop_now_cancels_the_job(world: World) -> None:
    process = world.launch(world.runner())
    job = world.job(duration=60)
    events_until(process, Busy)
    ended = process.stop(now=True, timeout=20)
    assert ended is not None and ended.code == 0
    assert world.sandbox.wait_for_job(job, "cancelled", timeout=SLOW)["status"] == "cancelled"


def test_drain_lets_the_job_finish(world: World) -> None:
    process = world.launch(world.runner())
    job = world.job(duration=3)
    events_until(process, Busy)
    assert process.stop(now=False, timeout=0.5) is None  # still busy: nothing signalled
    assert process.exit() is None
    ended = process.stop(now=False, timeout=SLOW)
    assert ended is not None and ended.code == 0
    assert world.sandbox.job(job)["status"] == "succeeded"


def start_from_a_parent_then_kill_it(world: World, tmp_path: Path) -> int:
    """Register and start the runner from another process, then SIGKILL that process."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runnerctl.config.models import GitHubSettings, Slot\n"
        "from runnerctl.distribution import RunnerCache\n"
        "from runnerctl.github import GitHub\n"
        "from runnerctl.runner import Runner\n"
        "from tests.integration.runner_world import MANAGER_ENV\n"
        "settings = GitHubSettings.model_validate_json(sys.argv[1])\n"
        "slot = Slot.model_validate_json(sys.argv[2])\n"
        "folder = Path(sys.argv[3])\n"
        "github = GitHub.from_settings(settings, state_dir=folder / 'state')\n"
        "cache = RunnerCache(folder / 'cache', github=github)\n"
        "runner = Runner(slot, github=github, cache=cache, server_url=sys.argv[4],"
        " environ=MANAGER_ENV)\n"
        "runner.install()\n"
        "process = runner.start(runner.register())\n"
        "print(process.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            world.settings.model_dump_json(),
            world.slot().model_dump_json(),
            str(tmp_path),
            world.sandbox.server_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
    finally:
        parent.kill()
        parent.wait()
    return int(line)


def test_adopt_after_the_parent_is_killed(world: World, tmp_path: Path) -> None:
    pid = start_from_a_parent_then_kill_it(world, tmp_path)
    runner = world.runner()
    try:
        assert alive(pid) and procfs.parent(pid) != pid
        process = runner.adopt()
        assert process is not None and process.pid == pid and process.adopted
        world.track(process)
        # An adopted runner's events and stop work like a child's.
        job = world.job(duration=1)
        events_until(process, Busy)
        events_until(process, Idle)
        assert world.sandbox.job(job)["status"] == "succeeded"
        # Never a second listener for the slot.
        with pytest.raises(RunnerError, match="already runs"):
            runner.register()
        ended = process.stop(now=True, timeout=20)
        assert ended is not None and ended.code is None and ended.action == "unknown"
        assert "adopted" in ended.meaning
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_stale_registration_is_recovered(world: World) -> None:
    runner = world.runner()
    runner.install()
    registration = runner.register()
    assert registration.runner_id is not None
    # Deleted on GitHub while nothing ran: the listener removes its files and exits 0.
    assert world.github.delete_runner(REPO, registration.runner_id)
    first = world.track(runner.start(registration))
    ended = first.wait(SLOW)
    assert ended is not None and ended.code == 0
    assert not (runner.directory / ".runner").exists()
    # A half-written .runner and a leftover credentials file must not block configure.
    (runner.directory / ".runner").write_text("{not json")
    (runner.directory / ".credentials").write_text("{}")
    second = world.track(runner.start(runner.register()))
    events_until(second, Online)
    job = world.job(duration=0.5)
    events_until(second, Idle)
    assert world.sandbox.job(job)["status"] == "succeeded"


def test_root_is_refused_without_the_operator_saying_so(world: World) -> None:
    environ = {k: v for k, v in MANAGER_ENV.items() if k != "RUNNER_ALLOW_RUNASROOT"}
    runner = world.runner(environ=environ)
    runner.install()
    world.sandbox.clear_calls()
    for mode in ("token", "jit"):
        refused = world.runner(world.slot(registration=mode), environ=environ)
        with pytest.raises(RunnerError, match="RUNNER_ALLOW_RUNASROOT"):
            refused.register()
    assert [c for c in world.sandbox.calls() if "token" in c["path"]] == []
    # The runner's own script refuses as well: the operator's yes is what lets it run.
    result = subprocess.run(
        [str(runner.directory / "config.sh"), "--unattended"],
        env={"PATH": MANAGER_ENV["PATH"]},
        capture_output=True,
        text=True,
        timeout=SLOW,
    )
    assert result.returncode == 1 and "Must not run with sudo" in result.stdout


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1, "stopped"),
        (2, "retry"),
        (3, "update"),
        (4, "update"),
        (5, "conflict"),
        (7, "deprecated"),
    ],
)
def test_every_exit_code(world: World, code: int, action: str) -> None:
    runner = world.runner()
    process = world.launch(runner)
    events_until(process, Online)
    runner_id = registered_id(runner.directory)
    world.sandbox.force_exit(runner_id, code)
    ended = process.wait(SLOW)
    assert ended is not None and ended.code == code and ended.action == action
    assert ended.keep_group == (code in (3, 4))


def test_deprecated_version_says_how_to_fix_it(world: World) -> None:
    world.sandbox.configure(deprecated_versions=["2.336.0"])
    runner = world.runner()
    process = world.launch(runner)
    ended = process.wait(SLOW)
    assert ended is not None and ended.code == 1 and ended.action == "deprecated"
    assert "latest" in ended.meaning
    opted_in = world.runner(
        world.slot("ci-2", env={"ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE": "true"})
    )
    seven = world.launch(opted_in).wait(SLOW)
    assert seven is not None and seven.code == 7 and seven.action == "deprecated"


def test_remove_waits_for_the_job(world: World) -> None:
    runner = world.runner()
    process = world.launch(runner)
    job = world.job(duration=3)
    events_until(process, Busy)
    with pytest.raises(RunnerBusy):
        runner.remove()
    assert world.runner_named("ci-1") is not None
    events_until(process, Idle)
    runner.remove()  # idle now: deleted through the API while the listener runs
    assert world.runner_named("ci-1") is None
    assert world.sandbox.job(job)["status"] == "succeeded"
    ended = process.wait(SLOW)  # the listener notices and leaves by itself
    assert ended is not None and ended.code in (0, 1)


def test_remove_without_local_files_and_when_gone(world: World) -> None:
    runner = world.runner()
    runner.install()
    runner.register()
    (runner.directory / ".runner").unlink()
    runner.remove()  # found by name through the API
    assert world.runner_named("ci-1") is None
    runner.remove()  # already gone: fine


def registered_id(directory: Path) -> int:
    runner_id = local_runner_id(directory)
    assert runner_id is not None
    return runner_id


@pytest.fixture
def open_base(tmp_path: Path) -> Iterator[Path]:
    """A base folder another user can reach (pytest's own temporary tree is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="runnerctl-user-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for pid in processes_under(base):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def test_runs_as_the_slot_user(world: World, open_base: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    environ = {**MANAGER_ENV, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    environ.pop("RUNNER_ALLOW_RUNASROOT")  # not root: no opt-in needed
    runner = world.runner(world.slot(user="nobody", base_dir=open_base), environ=environ)
    process = world.launch(runner)
    events_until(process, Online)
    assert os.stat(f"/proc/{process.pid}").st_uid == nobody.pw_uid
    assert runner.directory.stat().st_uid == nobody.pw_uid
    assert (runner.directory / ".runner").stat().st_uid == nobody.pw_uid
    assert (runner.directory / "runner.log").stat().st_uid == nobody.pw_uid
    env = environ_of(process.pid)
    assert env["USER"] == "nobody" and env["HOME"] == nobody.pw_dir
    job = world.job(duration=0.5)
    events_until(process, Idle)
    assert world.sandbox.job(job)["status"] == "succeeded"
    ended = process.stop(now=True, timeout=20)
    assert ended is not None and ended.code == 0


def test_version_change_keeps_work_and_log(world: World) -> None:
    runner = world.runner(world.slot(version="2.335.0"))
    assert runner.install() == "2.335.0"
    assert runner.install() == "2.335.0"  # already there: left alone
    work = runner.directory / "_work" / "checkout" / "file.txt"
    work.parent.mkdir(parents=True)
    work.write_text("kept")
    (runner.directory / "runner.log").write_text("an earlier life\n")
    newer = world.runner(world.slot(version="latest"))
    assert newer.install() == "2.336.0"
    assert work.read_text() == "kept"
    assert (runner.directory / "runner.log").read_text() == "an earlier life\n"
    process = world.track(newer.start(newer.register()))
    events_until(process, Online)
    assert "an earlier life" in (runner.directory / "runner.log").read_text()


def test_a_refused_registration_token_is_replaced_once(world: World) -> None:
    runner = world.runner()
    runner.install()
    world.sandbox.add_fault("runner-registration", "status", status=404, count=1)
    world.sandbox.clear_calls()
    registration = runner.register()
    assert registration.runner_id is not None
    minted = [c for c in world.sandbox.calls() if c["path"].endswith("/registration-token")]
    assert len(minted) == 2  # the shared one, then a fresh one after the refusal
