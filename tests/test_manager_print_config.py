"""``runnerctl-manager print-config`` as operators run it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "contrib" / "runnerctl.yaml.example"
TOKEN = "ghp_NeverPrintThis0123456789"
PEM = "-----BEGIN RSA PRIVATE KEY-----\\nMIIsecretkeymaterial\\n-----END RSA PRIVATE KEY-----"


def run(
    tmp_path: Path, *args: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(environ or {})}
    return subprocess.run(
        [sys.executable, "-m", "runnerctl.manager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def test_prints_the_example_as_yaml(tmp_path: Path) -> None:
    done = run(tmp_path, "print-config", "--config", str(EXAMPLE))

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    shown = yaml.safe_load(done.stdout)
    assert shown["source"] == str(EXAMPLE)
    names = [slot["name"] for slot in shown["slots"]]
    assert names == ["ci-1", "ci-2", "ci-3", "gpu-1", "release", "legacy-1", "legacy-2"]
    release = shown["slots"][4]
    assert (release["scope"], release["repo"]) == ("repo", "octo-org/release-tools")
    assert (release["ephemeral"], release["registration"]) == (False, "token")
    assert release["directory"] == "/opt/runnerctl/runners/release"
    assert shown["manager"]["stop_timeout"] == 300
    assert shown["github"]["auth_method"] == "none"
    assert shown["github"]["api_url"] == "https://api.github.com"


def test_json_output_with_overrides_and_masked_secrets(tmp_path: Path) -> None:
    environ = {
        "RUNNERCTL_CONFIG": str(EXAMPLE),  # no --config: the variable names the file
        "GHWFAX__DEFAULTS__VERSION": "2.336.0",
        "GITHUB_WFA_RUNNER_MANAGER__INTERVAL": "2.5",
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_PRIVATE_KEY": PEM,
    }
    done = run(tmp_path, "print-config", "--format", "json", environ=environ)

    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["defaults"]["version"] == "2.336.0"
    assert shown["slots"][0]["version"] == "2.336.0"
    assert shown["slots"][5]["version"] == "2.335.0"  # pinned in the file: the item wins
    assert shown["manager"]["interval"] == 2.5
    assert sorted(shown["overrides"]) == [
        "GHWFAX__DEFAULTS__VERSION",
        "GITHUB_WFA_RUNNER_MANAGER__INTERVAL",
    ]
    assert shown["github"]["auth_method"] == "token"
    assert shown["github"]["token"] == "********"
    assert shown["github"]["private_key"] == "********"
    assert shown["github"]["app_id"] == "12345"
    for secret in (TOKEN, "MIIsecretkeymaterial"):
        assert secret not in done.stdout + done.stderr


def test_invalid_config_exits_2_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "runnerctl.yaml"
    bad.write_text(
        "defaults:\n  version: newest\nrunners:\n"
        "  - {name: a, repo: octo/app}\n  - {name: b, repo: octo/app}\n"
        "  - {name: c, scope: repo, repo: myorg}\n"
    )
    done = run(
        tmp_path,
        "print-config",
        "--config",
        str(bad),
        environ={"GHWFAX__MANAGER__INTERVAL": "-1", "GITHUB_TOKEN": TOKEN},
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert TOKEN not in done.stderr
    assert done.stderr.splitlines() == [
        f"{bad}: defaults.version: 'newest' is neither latest nor X.Y.Z (e.g. latest or 2.336.0)",
        f"{bad}: runners[2].repo: 'myorg' is not owner/repo (for an organization use scope: org)",
        "GHWFAX__MANAGER__INTERVAL: '-1' must be greater than 0",
    ]


def test_missing_file_and_yaml_syntax_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    done = run(tmp_path, "print-config", "--config", str(missing))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"{missing}: no such file; create it or name another with --config\n"

    broken = tmp_path / "broken.yaml"
    broken.write_text("runners:\n  - name: [a\n")
    done = run(tmp_path, "print-config", "--config", str(broken))
    assert done.returncode == 2
    assert done.stderr.startswith(f"{broken}: line 3, column 1: YAML syntax error")
    assert "Traceback" not in done.stderr


def test_default_path_is_etc_runnerctl(tmp_path: Path) -> None:
    done = run(tmp_path, "print-config")
    default = "/etc/runnerctl/runnerctl.yaml"
    if done.returncode == 0:  # this machine has a valid configuration there
        assert yaml.safe_load(done.stdout)["source"] == default
    else:
        assert done.returncode == 2
        assert done.stderr
        assert all(line.startswith(default) for line in done.stderr.splitlines())
