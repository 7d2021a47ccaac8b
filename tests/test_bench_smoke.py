"""The benchmark harness works: a tiny run of runnerctl and the floor, real processes.

``python -m bench`` at N=3 for a few seconds (no supervisord or circus, so no venv of
its own): the figures it writes must be the ones a churning pool produces, and it must
leave no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import processes_under

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
def test_tiny_run_measures_runnerctl_and_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "bench", "--slots", "3", "--only", "runnerctl,floor"]
    command += ["--warmup", "0.5", "--window", "5", "--idle", "1", "--kills", "2"]
    command += ["--token-slots", "0", "--json", str(out)]
    # The harness makes its folder under TMPDIR: here, so leftovers are easy to find.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=130)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output
    assert "N=3" in output and "runnerctl / floor" in output, output

    report = json.loads(out.read_text(encoding="utf-8"))
    runs = {run["kind"]: run for run in report["runs"]}
    assert set(runs) == {"runnerctl", "floor"}
    mine, floor = runs["runnerctl"], runs["floor"]
    # Five seconds of 0.5-3 s jobs on three slots: a few respawns, each one timed.
    assert mine["respawns"] >= 2 and mine["respawn"]["n"] == mine["respawns"]
    assert mine["supervision"]["n"] >= 2 and 0 < mine["supervision"]["p50"] < 2000
    assert 0 < mine["respawn"]["p50"] < 5000 and mine["online"]["n"] >= 2
    assert mine["kill"]["n"] == 2 and mine["cold_start"] > 0
    assert mine["pss"] > 0 and mine["uss_worker"]["median"] > 0
    # JIT mode: one generate-jitconfig per ephemeral runner.
    assert 0.5 <= mine["calls_per_respawn"] <= 2.0, mine
    assert floor["respawn"]["n"] >= 3 and floor["respawn"]["p50"] < 1000
    assert processes_under(tmp_path) == []
