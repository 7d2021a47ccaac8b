"""Bad inputs end to end: each gives one clear line and loses no state.

Every case drives the user-facing command (``runnerctl-manager once`` or ``run``, a real
subprocess) against the loopback GitHub, where the App is installed on octo/app only, so
any other repository is unknown. A case passes when the user sees one line naming the
thing and the fix, no traceback, and whatever was healthy keeps running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerctl.sandbox import Sandbox
from tests.integration.tree import MANAGER, Manager, eventually
from tests.processes import alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
FAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), Path("libfaketime.so.1"))


@pytest.fixture
def double(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(repos=["octo/app"], root=tmp_path / "sandbox") as running:
        running.configure(poll_seconds=0.2, offline_after=3)
        yield running


@pytest.fixture
def manager(double: Sandbox, tmp_path: Path) -> Iterator[Manager]:
    folder = tmp_path / "pool"
    folder.mkdir()
    made = Manager(folder, double)
    try:
        yield made
    finally:
        made.kill_everything()


def item(name: str, repo: str = "octo/app", **settings: object) -> str:
    lines = [f"  - name: {name}\n    repo: {repo}\n    daemonize: false\n"]
    lines += [f"    {key}: {value}\n" for key, value in settings.items()]
    return "".join(lines)


def once(manager: Manager, **env: str) -> subprocess.CompletedProcess[str]:
    """``runnerctl-manager once`` as the user runs it, in the pool's folder."""
    return subprocess.run(
        [*MANAGER, "once", "--config", str(manager.config)],
        cwd=manager.folder,
        env=base_env(manager.folder) | env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "RUNNER_ALLOW_RUNASROOT": "1",
    }


def the_line(text: str, fragment: str) -> str:
    """The single output line holding ``fragment``."""
    found = [line for line in text.splitlines() if fragment in line]
    assert len(found) == 1, text
    return found[0]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def backing_off(manager: Manager, name: str) -> dict[str, Any] | None:
    """The slot's status once it has given up for now and says why."""
    slot = manager.slots().get(name, {})
    return slot if slot.get("state") == "backoff" and slot.get("notice") else None


def replace_setting(manager: Manager, old: str, new: str) -> None:
    text = manager.config.read_text()
    assert old in text
    manager.config.write_text(text.replace(old, new))


# An unknown repository ------------------------------------------------------------------


def test_once_names_an_unknown_repo_and_still_starts_the_known_one(manager: Manager) -> None:
    manager.write(item("good") + item("lost", repo="octo/nope"))

    result = once(manager)

    assert result.returncode != 0
    no_traceback(result)
    line = the_line(result.stdout, "lost")
    assert "octo/nope" in line and "check the name" in line
    assert "administration: write" in line
    assert the_line(result.stdout, "good").split()[:2] == ["good", "started"]
    eventually(lambda: "good" in manager.online())


def test_run_backs_off_an_unknown_repo_while_the_other_slots_run(manager: Manager) -> None:
    manager.write(item("good") + item("lost", repo="octo/nope"))
    manager.start()

    eventually(lambda: manager.states().get("good") == "idle" and "good" in manager.online())
    before = manager.slots()["good"]
    lost = eventually(lambda: backing_off(manager, "lost"))
    assert "octo/nope" in lost["notice"] and "check the name" in lost["notice"]
    assert lost["reason"].startswith("NotFound; retry in ")
    assert "octo/nope" in the_line(manager.log.read_text(), "launch failed: lost")

    shown = subprocess.run(
        [*MANAGER, "status", "--config", str(manager.config)],
        env=base_env(manager.folder),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0
    assert "octo/nope" in the_line(shown.stdout, "note: lost:")
    assert alive(manager.pid)
    assert manager.slots()["good"]["runner_pid"] == before["runner_pid"]
    assert "lost" not in manager.registered()


# An unreadable key ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "dangling"])
def test_once_names_an_unreadable_key_file(manager: Manager, kind: str) -> None:
    # Root reads a mode-000 file anyway, so the obstacle is a folder or a missing file.
    key = manager.folder / "app.pem"
    if kind == "directory":
        key.mkdir()
    manager.write(item("good"))
    replace_setting(manager, str(manager.sandbox.private_key_file), str(key))

    result = once(manager)

    assert result.returncode != 0
    no_traceback(result)
    assert result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"cannot read GitHub App private key {key}:")
    assert "check the path" in line
    assert manager.registered() == set()


# No permission on base_dir ----------------------------------------------------------------
# Root ignores permission bits, so each obstacle is one root cannot pass: a read-only
# filesystem, a path through a regular file; and the bits themselves for an ordinary user.


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs mounted for the test (root can write nowhere under it)."""
    mount = tmp_path / "read-only"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def two_slots(manager: Manager, blocked: Path) -> None:
    """``good`` in a writable base_dir, ``stuck`` in ``blocked``."""
    manager.write(
        item("good", base_dir=manager.folder / "runners") + item("stuck", base_dir=blocked)
    )


def test_once_names_a_read_only_base_dir_and_still_starts_the_rest(
    manager: Manager, read_only: Path
) -> None:
    two_slots(manager, read_only / "runners")

    result = once(manager)

    assert result.returncode != 0
    no_traceback(result)
    line = the_line(result.stdout, "stuck")
    assert f"{read_only}/runners/stuck" in line and "Read-only file system" in line
    assert the_line(result.stdout, "good").split()[:2] == ["good", "started"]
    eventually(lambda: "good" in manager.online())
    assert "stuck" not in manager.registered()


def test_once_names_a_base_dir_that_runs_through_a_file(manager: Manager) -> None:
    blocker = manager.folder / "not-a-folder"
    blocker.write_text("someone else's file\n")
    two_slots(manager, blocker / "runners")

    result = once(manager)

    assert result.returncode != 0
    no_traceback(result)
    assert f"{blocker}/runners/stuck" in the_line(result.stdout, "stuck")
    assert blocker.read_text() == "someone else's file\n"
    eventually(lambda: "good" in manager.online())


def test_run_keeps_the_root_and_other_slots_when_base_dir_is_read_only(
    manager: Manager, read_only: Path
) -> None:
    two_slots(manager, read_only / "runners")
    manager.start()

    eventually(lambda: manager.states().get("good") == "idle" and "good" in manager.online())
    before = manager.slots()["good"]["runner_pid"]
    stuck = eventually(lambda: backing_off(manager, "stuck"))
    assert f"{read_only}/runners/stuck" in stuck["notice"]
    assert f"{read_only}/runners/stuck" in the_line(manager.log.read_text(), "launch failed: stuck")
    assert "Traceback" not in manager.log.read_text()
    assert alive(manager.pid)
    assert manager.slots()["good"]["runner_pid"] == before
    assert "stuck" not in manager.registered()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="runnerctl-bad-inputs-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_once_as_an_ordinary_user_names_a_base_dir_it_cannot_write(
    double: Sandbox, shared_folder: Path
) -> None:
    assert shutil.which("setpriv"), "this test runs the manager as nobody via setpriv"
    manager = Manager(shared_folder, double)
    try:
        manager.write(item("good"))
        key = shared_folder / "app.pem"
        shutil.copy(double.private_key_file, key)
        replace_setting(manager, str(double.private_key_file), str(key))
        for owned in (key, manager.state, shared_folder / "cache"):
            if owned != key:
                owned.mkdir()
            os.chown(owned, NOBODY, NOBODY)
        manager.runners.mkdir(mode=0o755)  # root's, as a careless install leaves it

        result = subprocess.run(
            [*AS_NOBODY, *MANAGER, "once", "--config", str(manager.config)],
            cwd=shared_folder,
            env=base_env(shared_folder),
            capture_output=True,
            text=True,
            timeout=90,
        )

        assert result.returncode != 0
        no_traceback(result)
        line = the_line(result.stdout, "good")
        assert f"{manager.runners}/good" in line and "Permission denied" in line
        assert list(manager.runners.iterdir()) == []
        assert manager.registered() == set()
    finally:
        manager.kill_everything()


def test_once_names_the_app_when_the_key_is_another_apps(manager: Manager) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = manager.folder / "other-app.pem"
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    manager.write(item("good"))
    replace_setting(manager, str(manager.sandbox.private_key_file), str(key))

    result = once(manager)

    assert result.returncode != 0
    no_traceback(result)
    line = the_line(result.stdout + result.stderr, "JWT")
    assert f"refused the JWT of App {manager.sandbox.app_id}" in line
    assert "that the private key belongs to that App" in line
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert manager.registered() == set()


# Clock skew (the manager's own clock moved with libfaketime) ----------------------------


def skewed(seconds: int) -> dict[str, str]:
    assert FAKETIME.exists(), "clock-skew tests need libfaketime: apt-get install faketime"
    return {
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def test_a_clock_up_to_a_minute_fast_still_registers(manager: Manager) -> None:
    manager.write(item("good"))

    result = once(manager, **skewed(50))

    no_traceback(result)
    assert result.returncode == 0, result.stdout + result.stderr
    eventually(lambda: "good" in manager.online())


def test_a_clock_far_ahead_is_named_as_the_likely_cause(manager: Manager) -> None:
    manager.write(item("good"))

    result = once(manager, **skewed(600))

    assert result.returncode != 0
    no_traceback(result)
    line = the_line(result.stdout + result.stderr, "JWT")
    assert f"App {manager.sandbox.app_id}" in line and "clock" in line
    assert manager.registered() == set()


# A config file replaced while the manager reloads -----------------------------------------


def test_a_half_written_config_is_refused_and_the_renamed_one_applied(manager: Manager) -> None:
    manager.write(item("keep"))
    manager.start()
    eventually(lambda: manager.states() == {"keep": "idle"} and "keep" in manager.online())
    before = manager.slots()["keep"]
    good_text = manager.config.read_text()

    # An editor that writes in place is caught half-way: the file ends mid-list.
    full = good_text + item("added")
    manager.config.write_text(full[: len(good_text) + 12])
    manager.signal(signal.SIGHUP)

    error = eventually(lambda: manager.status().get("root", {}).get("config_error"))
    assert "\n" not in error
    assert "config invalid: " in manager.log.read_text()
    assert f"reload ignored: {manager.config} is invalid" in manager.log.read_text()
    assert "Traceback" not in manager.log.read_text()
    kept = manager.slots()
    assert set(kept) == {"keep"}
    assert (kept["keep"]["worker_pid"], kept["keep"]["runner_pid"]) == (
        before["worker_pid"],
        before["runner_pid"],
    )

    # The whole file lands by rename: it is applied, the running slot untouched.
    staged = manager.config.with_name("runnerctl.yaml.new")
    staged.write_text(full)
    os.replace(staged, manager.config)
    manager.signal(signal.SIGHUP)

    eventually(lambda: manager.states() == {"keep": "idle", "added": "idle"})
    eventually(lambda: {"keep", "added"} <= set(manager.online()))
    assert not manager.status()["root"].get("config_error")
    assert manager.slots()["keep"]["runner_pid"] == before["runner_pid"]
    assert alive(manager.pid)


@pytest.mark.parametrize(
    "obstacle", ["read-only mount", "a file in the path", "base_dir is a file"]
)
def test_a_base_dir_error_says_what_to_do(
    manager: Manager,
    read_only: Path,
    obstacle: str,
) -> None:
    blocker = manager.folder / "not-a-folder"
    blocker.write_text("x\n")
    blocked = {
        "read-only mount": read_only / "runners",
        "a file in the path": blocker / "runners",
        "base_dir is a file": blocker,
    }[obstacle]
    two_slots(manager, blocked)

    line = the_line(once(manager).stdout, "stuck")

    assert str(blocked) in line
    # Past the folder and the reason, the line should say what to do about it.
    assert "; " in line.split(str(blocked), 1)[1], line
