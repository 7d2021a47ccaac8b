"""``runnerctl-manager demo`` for real: the loopback GitHub, a manager, runners, jobs.

Each test runs the command as a child in a session of its own, with TMPDIR in the
test's folder so the demo's temporary folder (and every process working in it) lies
where the test, and tests/conftest.py's reaper, can see it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runnerctl.demo_view import LiveView, SlotRow, Snapshot
from tests.processes import processes_under, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEMO = (sys.executable, "-m", "runnerctl.manager", "demo")
SUMMARY = re.compile(
    r"^demo: (?P<succeeded>\d+) jobs succeeded, (?P<failed>\d+) failed, (?P<lost>\d+) lost, "
    r"(?P<cancelled>\d+) cancelled, (?P<unfinished>\d+) not run; (?P<calls>\d+) API calls; "
    r"manager exit code (?P<code>-?\w+)$",
    re.MULTILINE,
)
FOLDER = re.compile(r"its folder (\S+)$", re.MULTILINE)
EXIT_BOUND = 120.0  # the demo's own stop is bounded well under this


class Demo:
    """One ``demo`` child: its output file, and what its lines say."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.output = tmp_path / "demo.out"
        self.errors = tmp_path / "demo.err"
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
        with self.output.open("wb") as out, self.errors.open("wb") as err:
            self.process = subprocess.Popen(
                [*DEMO, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def folder(self) -> Path:
        found = wait_for(lambda: FOLDER.search(self.text()), timeout=30)
        assert found is not None
        return Path(found.group(1))

    def summary(self) -> dict[str, str]:
        found = SUMMARY.search(self.text())
        assert found, f"no summary line in:\n{self.text()}\nstderr:\n{self.errors.read_text()}"
        return found.groupdict()

    def wait(self) -> int:
        return self.process.wait(EXIT_BOUND)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        demo = Demo(tmp_path, *args)
        started.append(demo)
        return demo

    try:
        yield start
    finally:
        for demo in started:
            demo.kill_group()
        for pid in processes_under(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def assert_clean_end(demo: Demo, folder: Path) -> dict[str, str]:
    """Exit 0, jobs done and none failed or lost, and no process left in the folder."""
    assert demo.wait() == 0, demo.text() + demo.errors.read_text()
    summary = demo.summary()
    assert int(summary["succeeded"]) >= 1
    assert (summary["failed"], summary["lost"], summary["code"]) == ("0", "0", "0")
    assert int(summary["calls"]) > 0
    assert processes_under(folder) == []
    assert "Traceback" not in demo.text() + demo.errors.read_text()
    return summary


def test_a_timed_demo_runs_jobs_on_a_mixed_pool_and_stops_cleanly(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--seconds", "20", "--keep")
    folder = demo.folder()

    assert_clean_end(demo, folder)
    text = demo.text()
    # Both kinds of slot had a live runner: ephemeral (JIT) and persistent (token).
    assert re.search(r"ci-1 (idle|busy) \(pid \d+", text), text
    assert re.search(r"persistent (idle|busy) \(pid \d+", text), text
    # --keep: the folder stays, with the manager's log and a config free of credentials.
    assert f"demo: kept {folder}" in text
    log = (folder / "manager.log").read_text()
    assert "started: root" in log
    config = (folder / "runnerctl.yaml").read_text()
    assert "private_key" not in config and "app_id" not in config


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_run_stops_everything_and_removes_the_folder(
    start_demo: Callable[..., Demo], signum: signal.Signals
) -> None:
    demo = start_demo("--seconds", "300")
    folder = demo.folder()
    wait_for(lambda: re.search(r" [1-9]\d* succeeded", demo.text()), timeout=90)

    if signum == signal.SIGINT:
        os.killpg(demo.process.pid, signum)  # what a terminal's Ctrl-C does
    else:
        os.kill(demo.process.pid, signum)  # what kill(1) or a service manager does

    assert_clean_end(demo, folder)
    assert "demo: stopping the manager" in demo.text()
    assert not folder.exists()


def test_a_manager_that_dies_is_reported_and_nothing_is_left(
    start_demo: Callable[..., Demo],
) -> None:
    demo = start_demo("--seconds", "300")
    folder = demo.folder()
    wait_for(lambda: re.search(r"ci-1 (idle|busy) \(pid \d+", demo.text()), timeout=90)
    root = json.loads((folder / "state" / "status.json").read_text())["root"]["pid"]

    os.kill(root, signal.SIGKILL)  # no drain: its workers and runners are orphaned

    assert demo.wait() == 1
    assert demo.summary()["code"] == "-9"
    marker = "demo: the manager ended (-9); the end of its manager.log:\n"
    assert marker in demo.text()
    tail = demo.text().split(marker, 1)[1].splitlines()
    assert tail and " runnerctl." in tail[0]  # the manager's own log lines follow
    assert processes_under(folder) == []
    assert not folder.exists()


def test_a_bad_slot_count_is_one_line() -> None:
    done = subprocess.run(
        [*DEMO, "--slots", "0"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "--slots: 0 is not between 1 and 16 (e.g. --slots 4)"
    ]


def test_the_live_table_is_redrawn_in_place() -> None:
    out = io.StringIO()
    view = LiveView(out, live=True)
    rows = (SlotRow("ci-1", "jit", "idle", 4242, 3, 0), SlotRow("keep", "token", "busy", 7, 1, 0))
    first = Snapshot(5.0, "running", rows, {"succeeded": 4}, api_calls=9)
    view.show(first)
    drawn = out.getvalue().count("\n")
    view.show(Snapshot(6.0, "running", rows, {"succeeded": 5}, api_calls=9))
    view.close()

    second = out.getvalue()[len(out.getvalue().split("\x1b[J")[0]) :]
    assert f"\x1b[{drawn}F" in second  # back over exactly the lines drawn before
    assert re.search(r"ci-1 +jit +idle +4242 +3 +0", out.getvalue())
    assert "0 queued, 0 running, 5 succeeded; API calls: 9" in second
    assert out.getvalue().endswith("\x1b[?25h")  # the cursor is given back
