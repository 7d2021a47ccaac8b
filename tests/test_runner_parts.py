"""The runner module's small parts: exit meanings, environment, pid file, log, parsing."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runnerctl import procfs
from runnerctl.runner import explain, pidfile
from runnerctl.runner.environment import Account, build, root_allowed
from runnerctl.runner.inotify import IN_CREATE, IN_MODIFY, Inotify
from runnerctl.runner.logfile import open_for_child, rotate
from runnerctl.runner.observe import Busy, Idle, LogObserver, Online, parse
from runnerctl.runner.register import Registration, Request, configure_args, jit_labels
from runnerctl.scope import Scope

# -- exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (0, "done"),
        (1, "stopped"),
        (2, "retry"),
        (3, "update"),
        (4, "update"),
        (5, "conflict"),
        (6, "retry"),
        (7, "deprecated"),
        (42, "retry"),
    ],
)
def test_exit_codes_have_meanings(code: int, action: str) -> None:
    result = explain(code)
    assert result.code == code and result.action == action and result.meaning
    assert result.keep_group == (code in (3, 4))
    assert str(code) in str(result)


def test_deprecated_exit_1_says_how_to_fix_it() -> None:
    result = explain(1, deprecated=True)
    assert result.action == "deprecated" and "version" in result.meaning
    assert "latest" in result.meaning
    assert explain(0, deprecated=True).action == "done"


def test_signal_and_unknown_exits() -> None:
    killed = explain(-signal.SIGKILL)
    assert killed.signal == signal.SIGKILL and killed.action == "killed"
    assert "SIGKILL" in str(killed)
    assert str(explain(-50)) == "killed by signal 50"  # a real-time signal without a name
    unknown = explain(None)
    assert unknown.code is None and unknown.action == "unknown" and "adopted" in unknown.meaning


# -- environment ---------------------------------------------------------------------------


MANAGER = {
    "PATH": "/opt/bin:/usr/bin",
    "LANG": "de_DE.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "Europe/Berlin",
    "http_proxy": "http://p:1",
    "HTTPS_PROXY": "http://p:2",
    "no_proxy": "localhost",
    "GITHUB_TOKEN": "ghp_secret",
    "GITHUB_APP_PRIVATE_KEY": "-----BEGIN",
    "GITHUB_APP_ID": "1",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "PYTHONPATH": "/somewhere",
    "SSH_AUTH_SOCK": "/tmp/agent",
}


def test_environment_is_an_allow_list() -> None:
    account = Account("builder", 1234, 1234, "/home/builder", (1234,))
    env = build(account, {"EXTRA": "1", "TZ": "UTC"}, MANAGER)
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "de_DE.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",  # the slot's env wins
        "http_proxy": "http://p:1",
        "HTTPS_PROXY": "http://p:2",
        "no_proxy": "localhost",
        "HOME": "/home/builder",
        "USER": "builder",
        "LOGNAME": "builder",
        "EXTRA": "1",
    }


def test_environment_defaults_and_root_opt_in() -> None:
    account = Account.lookup(None)
    env = build(account, {}, {})
    assert env["PATH"] and env["LANG"] == "C.UTF-8" and env["USER"] == account.name
    assert not root_allowed(env)
    assert root_allowed(build(account, {}, {"RUNNER_ALLOW_RUNASROOT": "1"}))
    assert root_allowed(build(account, {"RUNNER_ALLOW_RUNASROOT": "yes"}, {}))


def test_account_lookup() -> None:
    root = Account.lookup("root")
    assert root.uid == 0 and root.is_root and root.home
    with pytest.raises(LookupError, match="does not exist"):
        Account.lookup("no-such-user-here")


# -- pid file and /proc --------------------------------------------------------------------


def test_pid_file_names_one_process(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        entry = pidfile.record(child.pid)
        assert entry is not None and entry.matches()
        path = tmp_path / "runner.pid"
        pidfile.write(path, entry)
        assert pidfile.read(path) == entry
        assert path.read_text() == f"{child.pid} {entry.start_time}\n"
        assert not pidfile.PidRecord(child.pid, entry.start_time + 1).matches()
        assert [p.name for p in tmp_path.iterdir()] == ["runner.pid"]  # no temporary left
    finally:
        child.kill()
        child.wait()
    assert not entry.matches()  # gone


def test_pid_file_garbage_and_removal(tmp_path: Path) -> None:
    path = tmp_path / "runner.pid"
    assert pidfile.read(path) is None
    for text in ("", "12", "12 x", "1 2 3", "\xff"):
        path.write_text(text)
        assert pidfile.read(path) is None
    pidfile.write(path, pidfile.PidRecord(5, 6))
    pidfile.remove(path, pidfile.PidRecord(5, 7))  # names another process: kept
    assert path.exists()
    pidfile.remove(path, pidfile.PidRecord(5, 6))
    assert not path.exists()


def test_procfs_reads_a_process_tree(tmp_path: Path) -> None:
    code = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, start_new_session=True)
    try:
        from tests.processes import wait_for

        [child] = wait_for(lambda: procfs.children(parent.pid), timeout=20)
        assert procfs.parent(child) == parent.pid
        assert procfs.descendants(parent.pid) == [child]
        assert procfs.cwd(parent.pid) == tmp_path
        assert procfs.is_named(child, "sleep") and procfs.command(child)[0] == "sleep"
        assert procfs.alive(child) and procfs.state(child) in ("S", "R")
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert procfs.start_time(parent.pid) is None or not procfs.alive(parent.pid)


# -- log file ------------------------------------------------------------------------------


def test_rotation_by_size_keeps_three(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    assert not rotate(log, max_bytes=10)
    for generation in range(5):
        log.write_text(f"generation {generation} " * 5)
        assert rotate(log, max_bytes=10)
    assert not log.exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["runner.log.1", "runner.log.2", "runner.log.3"]
    assert (tmp_path / "runner.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "runner.log.3").read_text().startswith("generation 2")
    log.write_text("small")
    assert not rotate(log, max_bytes=10) and log.read_text() == "small"


def test_child_appends_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    log.write_text("before\n")
    fd = open_for_child(log)
    try:
        subprocess.run(["echo", "from the child"], stdout=fd, stderr=fd, check=True)
    finally:
        os.close(fd)
    assert log.read_text() == "before\nfrom the child\n"


# -- console lines and the observer ------------------------------------------------------


def test_console_lines() -> None:
    assert parse("2026-01-01 10:00:00Z: Listening for Jobs") == Online()
    assert parse("2026-01-01 10:00:01Z: Running job: build (linux)") == Busy("build (linux)")
    assert parse("2026-01-01 10:00:09Z: Job build (linux) completed with result: Failed") == Idle(
        "build (linux)", "Failed"
    )
    assert parse("√ Connected to GitHub") is None


def test_observer_follows_appends_and_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    log.write_text("Running job: old one\n")  # an earlier life, before the offset
    observer = LogObserver(log, os.getpid(), offset=log.stat().st_size)
    try:
        assert observer.read_events() == [] and not observer.busy
        with log.open("a") as out:
            out.write("Listening for Jobs\nRunning job: ne")
        assert select.select([observer], [], [], 10)[0]
        assert observer.read_events() == [Online()]
        with log.open("a") as out:
            out.write("w\nJob new completed with result: Succeeded\n")
        assert select.select([observer], [], [], 10)[0]
        events = observer.read_events()
        assert [type(e) for e in events] == [Busy, Idle] and events[1] == Idle("new", "Succeeded")
        assert not observer.busy and observer.online
    finally:
        observer.close()


def test_inotify_reports_creation(tmp_path: Path) -> None:
    with Inotify() as watch:
        watch.watch(tmp_path, IN_CREATE | IN_MODIFY)
        assert select.select([watch], [], [], 0)[0] == []
        (tmp_path / "update.finished").touch()
        assert select.select([watch], [], [], 10)[0]
        assert [change.name for change in watch.read()] == ["update.finished"]
    with pytest.raises(OSError), Inotify() as broken:
        broken.watch(tmp_path / "missing", IN_MODIFY)


# -- registration arguments ------------------------------------------------------------------


def test_configure_arguments_never_carry_a_secret() -> None:
    request = Request(
        scope=Scope("org", "octo"),
        url="https://github.example/octo",
        name="ci-1",
        labels=("gpu", "big"),
        work="_work",
        group="Builders",
        ephemeral=True,
    )
    assert configure_args(request) == [
        "--unattended",
        "--url",
        "https://github.example/octo",
        "--name",
        "ci-1",
        "--labels",
        "gpu,big",
        "--work",
        "_work",
        "--runnergroup",
        "Builders",
        "--ephemeral",
        "--replace",
        "--disableupdate",
    ]
    assert not any("token" in arg.lower() for arg in configure_args(request))


def test_jit_labels_match_a_configured_runner() -> None:
    assert jit_labels(("gpu", "linux"), "x64") == ["self-hosted", "Linux", "X64", "gpu"]
    assert jit_labels((), "arm64") == ["self-hosted", "Linux", "ARM64"]


def test_registration_repr_hides_the_jit_config() -> None:
    from pydantic import SecretStr

    registration = Registration("jit", "ci-1", 7, SecretStr("eyJzZWNyZXQiOiJ5ZXMifQ=="))
    assert "eyJ" not in repr(registration) and "eyJ" not in str(registration)


# -- self-update ---------------------------------------------------------------------------


def test_settle_update_waits_for_update_finished(tmp_path: Path) -> None:
    from runnerctl.runner.install import processes_in, settle_update

    (tmp_path / "_update.sh").write_text("# written by the listener before it runs it\n")
    code = "import time, pathlib; time.sleep(1); pathlib.Path('update.finished').touch()"
    updater = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path)
    try:
        assert processes_in(tmp_path) == [updater.pid]
        assert settle_update(tmp_path, timeout=30)
        assert not (tmp_path / "update.finished").exists()  # consumed
    finally:
        updater.kill()
        updater.wait()
    assert not settle_update(tmp_path, timeout=30)  # nothing running, nothing to wait for


def test_settle_update_gives_up_after_its_timeout(tmp_path: Path) -> None:
    from runnerctl.runner.install import settle_update

    (tmp_path / "_update.sh").write_text("# written by the listener before it runs it\n")
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    try:
        assert not settle_update(tmp_path, timeout=0.5)
    finally:
        stuck.kill()
        stuck.wait()


def test_settle_update_returns_at_once_where_no_update_ever_started(tmp_path: Path) -> None:
    from runnerctl.runner.install import settle_update

    # A listener at work, but no _update.sh: it is running jobs, not updating itself.
    listener = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path)
    try:
        began = time.monotonic()
        assert not settle_update(tmp_path, timeout=30)
        assert time.monotonic() - began < 1.0
    finally:
        listener.kill()
        listener.wait()


def test_only_a_deprecated_version_counts(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    log.write_text("")
    observer = LogObserver(log, os.getpid(), offset=0)
    try:
        with log.open("a") as out:
            out.write("Warning: '--once' is going to be deprecated; use '--ephemeral'.\n")
        observer.read_events()
        assert not observer.deprecated
        with log.open("a") as out:
            out.write("An error occurred: Runner version v2.300.0 is deprecated.\n")
        observer.read_events()
        assert observer.deprecated
    finally:
        observer.close()


# -- config.sh -----------------------------------------------------------------------------


def test_config_script_is_bounded_and_logged(tmp_path: Path) -> None:
    from runnerctl.runner import configsh

    script = tmp_path / "config.sh"
    script.write_text(
        '#!/bin/sh\necho "token is ${ACTIONS_RUNNER_INPUT_TOKEN:+set}"\nsleep 60 &\nwait\n'
    )
    script.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "ACTIONS_RUNNER_INPUT_TOKEN": "secret-value"}
    result = configsh.run(tmp_path, ["configure"], env, timeout=1.0)
    assert not result.ok and "took over 1s" in result.output
    assert "token is set" in result.output and "secret-value" not in result.output
    assert "token is set" in (tmp_path / "runner.log").read_text()
    # The script's own children went with it: the whole group was killed.
    assert [p for p in procfs.pids() if procfs.cwd(p) == tmp_path] == []
