"""The stand-in runner without a server: tarballs, parsing, scripts and local files.

Parsing rules are checked on the real CommandSettings module loaded from an unpacked
tarball; everything else runs the real scripts and listener as processes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib
import json
import os
import signal
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runnerctl.sandbox.tarballs import ARCHES, LATEST, VERSIONS, build_tarball, tarball_name
from tests.sandbox.test_standin_support import (
    Starter,
    read_runner_file,
    run,
    runner_env,
    unpack,
)

pytestmark = pytest.mark.timeout(60)

# A port nothing listens on: any network call the runner makes there fails loudly.
DEAD_URL = "http://127.0.0.1:9/octo/app"


# -- tarballs ----------------------------------------------------------------------------


def test_tarball_bytes_are_deterministic(tmp_path: Path) -> None:
    first = build_tarball(LATEST, "x64", tmp_path / "a")
    second = build_tarball(LATEST, "x64", tmp_path / "b")
    other_arch = build_tarball(LATEST, "arm64", tmp_path / "a")
    other_version = build_tarball(VERSIONS[0], "x64", tmp_path / "a")

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert first.name == "actions-runner-linux-x64-2.336.0.tar.gz"
    assert digest(first) == digest(second)
    assert len({digest(first), digest(other_arch), digest(other_version)}) == 3
    # gzip header: no file name and mtime 0.
    header = first.read_bytes()[:10]
    assert header[3] & 0x08 == 0
    assert header[4:8] == b"\0\0\0\0"


def test_tarball_layout_and_modes(latest_tarball: Path) -> None:
    with tarfile.open(latest_tarball) as archive:
        members = {member.name: member for member in archive.getmembers()}
    names = list(members)
    assert names == sorted(names)
    for required in ("config.sh", "run.sh", "env.sh", "run-helper.sh.template"):
        assert members[required].mode == 0o755, required
    for entry in ("bin/Runner.Listener", "bin/Runner.Worker"):
        assert members[entry].mode == 0o755, entry
    assert members["bin/_runner_common.py"].mode == 0o644
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert len({m.mtime for m in members.values()}) == 1
    with gzip.open(latest_tarball) as raw:
        assert raw.read(1)  # a valid gzip stream


def test_versions_and_arches_contract() -> None:
    assert VERSIONS == ("2.329.0", "2.334.0", "2.335.0", "2.336.0")
    assert VERSIONS[-1] == LATEST
    assert ARCHES == ("x64", "arm64")
    assert tarball_name("2.329.0", "arm64") == "actions-runner-linux-arm64-2.329.0.tar.gz"


def test_build_tarball_rejects_bad_arch_and_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arch"):
        build_tarball(LATEST, "arm", tmp_path)
    with pytest.raises(ValueError, match=r"X\.Y\.Z"):
        build_tarball("v2.336.0", "x64", tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [VERSIONS[0], LATEST])
def test_listener_prints_its_version(version: str, tmp_path: Path) -> None:
    root = unpack(build_tarball(version, "arm64", tmp_path / "tarballs"), tmp_path / "runner")
    result = run(["bin/Runner.Listener", "--version"], root)
    assert (result.returncode, result.stdout) == (0, f"{version}\n")


# -- parsing (the real module, loaded from the unpacked tarball) -------------------------


@pytest.fixture
def args_module(runner_dir: Path) -> Iterator[ModuleType]:
    sys.path.insert(0, str(runner_dir / "bin"))
    try:
        for name in ("_runner_build", "_runner_common", "_runner_args", "_runner_registration"):
            sys.modules.pop(name, None)
        yield importlib.import_module("_runner_args")
    finally:
        sys.path.remove(str(runner_dir / "bin"))
        for name in ("_runner_build", "_runner_common", "_runner_args", "_runner_registration"):
            sys.modules.pop(name, None)


def settings(module: ModuleType, argv: list[str], environ: dict[str, str] | None = None) -> Any:
    return module.CommandSettings(argv, environ={} if environ is None else environ)


def test_only_space_separated_values_are_understood(args_module: ModuleType) -> None:
    parsed = settings(args_module, ["configure", "--url=http://x/o/r", "--name", "a"])
    assert parsed.get("url") is None
    assert parsed.get("name") == "a"
    assert parsed.command == "configure"


def test_values_starting_with_dash_are_dropped(args_module: ModuleType) -> None:
    parsed = settings(args_module, ["--name", "-runner", "--labels", "a,b"])
    assert parsed.get("name") is None
    assert parsed.get("labels") == "a,b"


def test_names_are_case_insensitive_and_first_duplicate_wins(args_module: ModuleType) -> None:
    parsed = settings(args_module, ["--NAME", "first", "--name", "second", "--Unattended"])
    assert parsed.get("name") == "first"
    assert parsed.flag("unattended")
    assert not parsed.flag("replace")
    assert parsed.command == "run"


def test_environment_inputs(args_module: ModuleType) -> None:
    environ = {
        "ACTIONS_RUNNER_INPUT_URL": "  http://x/o/r  ",
        "actions_runner_input_name": "from-env",
        "ACTIONS_RUNNER_INPUT_LABELS": "   ",
        "ACTIONS_RUNNER_INPUT_EPHEMERAL": "TRUE",
        "ACTIONS_RUNNER_INPUT_REPLACE": "1",
        "ACTIONS_RUNNER_INPUT_NO-DEFAULT-LABELS": "true",
        "ACTIONS_RUNNER_INPUT_DISABLEUPDATE": "false",
        "OTHER": "kept",
    }
    parsed = settings(args_module, ["--name", "from-argv"], environ)
    assert parsed.get("url") == "http://x/o/r"
    assert parsed.get("name") == "from-argv"
    assert parsed.get("labels") is None
    assert parsed.flag("ephemeral")
    assert parsed.flag("no-default-labels")
    assert not parsed.flag("replace")  # "1" is not a .NET boolean
    assert not parsed.flag("disableupdate")
    assert environ == {"OTHER": "kept"}  # every input left the environment


def test_unknown_options_only_warn(runner_dir: Path) -> None:
    result = run(
        ["./config.sh", "--unattended", "--url=" + DEAD_URL, "--bogus", "x", "--token", "t"],
        runner_dir,
    )
    assert result.returncode == 1
    assert "Unrecognized command-line input arguments" in result.stdout
    assert "url=" in result.stdout and "bogus" in result.stdout
    assert "Invalid configuration provided for url" in result.stderr


def test_api_url_derivation(args_module: ModuleType) -> None:
    registration = importlib.import_module("_runner_registration")
    assert registration.api_base("https://github.com/o/r") == "https://api.github.com"
    assert registration.api_base("https://acme.ghe.com/o") == "https://api.acme.ghe.com"
    assert registration.api_base("http://127.0.0.1:8080/o/r") == "http://127.0.0.1:8080/api/v3"
    assert registration.api_base("https://ghes.corp/o") == "https://ghes.corp/api/v3"
    assert registration.scope_path("https://github.com/o") == "orgs/o"
    assert registration.scope_path("https://github.com/o/r") == "repos/o/r"
    assert registration.scope_path("https://github.com/enterprises/e") == "enterprises/e"
    os.environ["GITHUB_ACTIONS_RUNNER_FORCE_GHES"] = "true"
    try:
        assert registration.api_base("https://github.com/o") == "https://github.com/api/v3"
    finally:
        del os.environ["GITHUB_ACTIONS_RUNNER_FORCE_GHES"]


# -- config.sh ---------------------------------------------------------------------------


def test_config_refuses_root_without_allow(runner_dir: Path) -> None:
    env = runner_env()
    del env["RUNNER_ALLOW_RUNASROOT"]
    refused = run(["./config.sh", "--version"], runner_dir, env)
    allowed = run(["./config.sh", "--version"], runner_dir, runner_env(RUNNER_ALLOW_RUNASROOT=""))
    if os.geteuid() == 0:
        assert (refused.returncode, refused.stdout) == (1, "Must not run with sudo\n")
    else:
        assert refused.returncode == 0
    # Set to anything, even empty, lets root through.
    assert (allowed.returncode, allowed.stdout) == (0, f"{LATEST}\n")


def test_run_helper_refuses_root_without_allow(runner_dir: Path) -> None:
    env = runner_env()
    del env["RUNNER_ALLOW_RUNASROOT"]
    template = runner_dir / "run-helper.sh.template"
    result = run([str(template)], runner_dir, env)
    if os.geteuid() == 0:
        assert (result.returncode, result.stdout) == (1, "Must not run with sudo\n")
    else:
        # Not root: the listener runs, finds no configuration, and the helper stops (0).
        assert result.returncode == 0
        assert "exit with terminated error" in result.stdout


def test_config_works_from_another_directory_and_writes_env_files(
    runner_dir: Path, tmp_path: Path
) -> None:
    (runner_dir / ".env").write_text("LANG=already\n")
    env = runner_env(LANG="C.UTF-8", JAVA_HOME="/opt/java")
    result = run([str(runner_dir / "config.sh"), "--unattended"], tmp_path, env)
    assert result.returncode == 1
    assert "Invalid configuration provided for url" in result.stderr
    lines = (runner_dir / ".env").read_text().splitlines()
    assert lines == ["LANG=already", "JAVA_HOME=/opt/java"]
    assert (runner_dir / ".path").read_text().strip() == env["PATH"]


def test_unattended_needs_a_token(runner_dir: Path) -> None:
    result = run(["./config.sh", "--unattended", "--url", DEAD_URL], runner_dir)
    assert result.returncode == 1
    assert "Invalid configuration provided for token" in result.stderr
    assert not (runner_dir / ".runner").exists()


def test_url_deeper_than_a_repository_is_rejected(runner_dir: Path) -> None:
    result = run(
        ["./config.sh", "--unattended", "--url", DEAD_URL + "/extra", "--token", "t"],
        runner_dir,
    )
    assert result.returncode == 1
    assert "should point to an org, enterprise or repository" in result.stderr


def test_configure_refuses_when_already_configured(runner_dir: Path) -> None:
    (runner_dir / ".runner").write_text("{}")
    result = run(
        ["./config.sh", "--unattended", "--url", DEAD_URL, "--token", "t", "--replace"],
        runner_dir,
    )
    assert result.returncode == 1
    assert "already configured" in result.stderr
    assert (runner_dir / ".runner").read_text() == "{}"


def test_unreachable_server_fails_configure(runner_dir: Path) -> None:
    result = run(["./config.sh", "--unattended", "--url", DEAD_URL, "--token", "t"], runner_dir)
    assert result.returncode == 1
    assert "Failed to connect to 127.0.0.1:9" in result.stderr


# -- remove ------------------------------------------------------------------------------


def write_fake_config(root: Path) -> None:
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        (root / name).write_text(
            '{"agentId": 7, "gitHubUrl": "' + DEAD_URL + '", "serverUrl": "http://127.0.0.1:9"}'
        )


def test_remove_local_deletes_files_without_network(runner_dir: Path) -> None:
    write_fake_config(runner_dir)
    result = run(["./config.sh", "remove", "--local"], runner_dir)
    assert result.returncode == 0, result.stderr
    assert "√ Removed .runner" in result.stdout
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        assert not (runner_dir / name).exists()


def test_remove_without_configuration_succeeds(runner_dir: Path) -> None:
    result = run(["./config.sh", "REMOVE", "--token", "t"], runner_dir)
    assert result.returncode == 0
    assert "Does not exist. Skipping Removing .runner" in result.stdout


def test_remove_refuses_while_a_service_is_installed(runner_dir: Path) -> None:
    write_fake_config(runner_dir)
    (runner_dir / ".service").write_text("actions.runner.octo-app.r1.service\n")
    result = run(["./config.sh", "remove", "--local"], runner_dir)
    assert result.returncode == 1
    assert "Uninstall service first" in result.stderr
    assert (runner_dir / ".runner").exists()


def test_remove_needs_a_token_unless_local(runner_dir: Path) -> None:
    write_fake_config(runner_dir)
    result = run(["./config.sh", "remove", "--unattended"], runner_dir)
    assert result.returncode == 1
    assert (runner_dir / ".runner").exists()


# -- run ---------------------------------------------------------------------------------


def test_run_without_configuration_is_a_terminated_error(runner_dir: Path) -> None:
    result = run(["bin/Runner.Listener", "run"], runner_dir)
    assert result.returncode == 1
    assert "not configured" in result.stderr


def test_run_with_a_broken_jit_config_fails(runner_dir: Path) -> None:
    result = run(["bin/Runner.Listener", "run", "--jitconfig", "not base64!"], runner_dir)
    assert result.returncode == 1
    assert "JIT config" in result.stderr
    assert "not base64" not in result.stdout + result.stderr  # secrets are never echoed


def test_jit_config_files_are_written_before_running(runner_dir: Path, start: Starter) -> None:
    runner = {"agentId": 3, "serverUrl": "http://127.0.0.1:9/_services/pipelines"}
    files = {
        ".runner": json.dumps(runner),
        ".credentials": json.dumps({"scheme": "OAuth"}),
        ".credentials_rsaparams": json.dumps({"agentSecret": "s3cret"}),
    }
    encoded = {name: base64.b64encode(text.encode()).decode() for name, text in files.items()}
    jitconfig = base64.b64encode(json.dumps(encoded).encode()).decode()
    env = runner_env(ACTIONS_RUNNER_INPUT_JITCONFIG=jitconfig)
    # Nothing answers at the server URL, so the listener retries until SIGINT stops it.
    listener = start(["bin/Runner.Listener", "run"], runner_dir, env)
    listener.wait_for_output("Failed to create session")
    assert read_runner_file(runner_dir / ".runner") == runner
    mode = stat.S_IMODE((runner_dir / ".credentials_rsaparams").stat().st_mode)
    assert mode == 0o600
    listener.signal(signal.SIGINT)
    assert listener.wait() == 0
    assert "s3cret" not in listener.output()
