"""The supervisor's commands as a user meets them: messages, exit statuses, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runnerctl.supervisor.status import write_status

MANAGER = (sys.executable, "-m", "runnerctl.manager")


def manager(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd)}
    return subprocess.run(
        [*MANAGER, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


def test_run_refuses_an_invalid_config_with_its_problems(tmp_path: Path) -> None:
    config = tmp_path / "pool.yaml"
    config.write_text("runners:\n  - name: a\n    repo: not a repo\n")

    result = manager("run", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2
    assert "repo" in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_a_non_positive_interval(tmp_path: Path) -> None:
    result = manager("run", "--interval", "0", "--config", str(tmp_path / "x.yaml"), cwd=tmp_path)

    assert result.returncode == 2
    assert "--interval: 0.0 is not positive" in result.stderr


def test_status_without_a_running_root_says_so(tmp_path: Path) -> None:
    result = manager("status", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)

    assert result.returncode == 1
    assert "no status yet" in result.stderr and "Traceback" not in result.stderr


def test_status_reads_the_published_document(tmp_path: Path) -> None:
    slot = {"name": "ci-1", "state": "busy", "runner_pid": 77, "jobs_done": 2, "restarts": 0}
    write_status(
        tmp_path / "state",
        {"root": {"pid": 1, "config": "/etc/r.yaml", "phase": "running"}, "slots": [slot]},
    )

    table = manager("status", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    raw = manager("status", "--json", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)

    assert table.returncode == 0
    assert table.stdout.splitlines()[4].split()[:3] == ["ci-1", "busy", "77"]
    assert json.loads(raw.stdout)["slots"][0]["jobs_done"] == 2
