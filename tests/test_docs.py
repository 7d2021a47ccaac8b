"""The operator docs against the code: the error catalogue, the exit codes, the examples.

docs/troubleshooting.md gives each message runnerctl prints as a ``### `template` ``
heading, with ``<placeholders>`` for the parts that vary. These tests make the real
code print a representative message from every area (a real ``runnerctl-manager``
process, against the loopback GitHub where GitHub is involved) and check that its
first line matches the entry written for it, so a reworded message fails here until
the catalogue follows. The YAML examples of docs/managed-mode.md must load.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerctl.config import load_config
from runnerctl.errors import ConfigError
from runnerctl.runner.exits import explain
from runnerctl.sandbox import Sandbox
from runnerctl.supervisor.states import SlotState
from runnerctl.supervisor.status import COLUMNS
from tests.processes import wait_for

DOCS = Path(__file__).resolve().parent.parent / "docs"
HEADING = re.compile(r"^### (`+) ?(.+?) ?\1$", re.MULTILINE)
PLACEHOLDER = re.compile(r"(<[^<>]+>)")
COMMAND_TIMEOUT = 90.0


@dataclass(frozen=True)
class Entry:
    """One catalogue entry: the message template and the pattern it stands for."""

    template: str
    pattern: re.Pattern[str]

    def matches(self, line: str) -> bool:
        return self.pattern.fullmatch(line) is not None


def to_pattern(template: str) -> re.Pattern[str]:
    """``<file>: no such file`` -> a regex where each placeholder matches any text."""
    parts = PLACEHOLDER.split(template)
    return re.compile("".join(".*?" if PLACEHOLDER.fullmatch(p) else re.escape(p) for p in parts))


def catalogue() -> dict[str, Entry]:
    """Every entry of docs/troubleshooting.md, by template."""
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    entries = [match.group(2) for match in HEADING.finditer(text)]
    return {template: Entry(template, to_pattern(template)) for template in entries}


def assert_documented(line: str, template: str) -> None:
    """``line`` is what runnerctl printed; ``template`` the entry that must describe it."""
    entries = catalogue()
    assert template in entries, f"docs/troubleshooting.md has no entry {template!r}"
    assert entries[template].matches(line), (
        f"runnerctl now prints {line!r}; its entry in docs/troubleshooting.md reads {template!r}"
    )


def clean_environment(home: Path, **variables: str) -> dict[str, str]:
    """A minimal environment: nothing of the test runner's GitHub variables leaks in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **variables}


def manager(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runnerctl.manager ARGS`` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "runnerctl.manager", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


# The catalogue itself ---------------------------------------------------------------


def test_catalogue_entries_are_distinct_and_specific() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    templates = [match.group(2) for match in HEADING.finditer(text)]

    assert len(templates) > 80
    assert len(set(templates)) == len(templates), "an entry appears twice"
    for template in templates:
        fixed = PLACEHOLDER.sub("", template)
        assert len(fixed.strip(" :;,()")) >= 10, f"entry too vague to match anything: {template}"


def test_placeholders_match_any_text_and_nothing_else() -> None:
    entry = Entry("x", to_pattern("<file>: no such file; create it (<why>)"))

    assert entry.matches("/etc/r.yaml: no such file; create it (a [b] c)")
    assert not entry.matches("/etc/r.yaml: no such file; create it")
    assert not entry.matches("/etc/r.yaml: no such file, create it (x)")


# Configuration and environment: a real print-config ---------------------------------

GOOD_RUNNERS = "runners:\n  - name: ci\n    repo: octo/app\n"

CONFIG_CASES: list[tuple[str, str | None, dict[str, str], str]] = [
    (
        "missing-file",
        None,
        {},
        "<file>: no such file; create it or name another with --config",
    ),
    (
        "yaml-syntax",
        "runners:\n  - name: a\n    repo: o/r\n  name: b\n",
        {},
        "<file>: line <line>, column <column>: YAML syntax error: <what>",
    ),
    (
        "key-twice",
        "runners:\n  - name: a\n    name: b\n    repo: o/r\n",
        {},
        "<file>: line <line>, column <column>: key <key> given twice; keep one",
    ),
    (
        "unknown-key",
        "defaults:\n  lables: gpu\n" + GOOD_RUNNERS,
        {},
        "<file>: <path>: unknown key <key> (<suggestion>)",
    ),
    (
        "version-with-v",
        "defaults:\n  version: v2.336.0\n" + GOOD_RUNNERS,
        {},
        "<where>: <value> is neither latest nor X.Y.Z (<hint>)",
    ),
    (
        "repo-not-owner-repo",
        "runners:\n  - name: ci\n    repo: octo\n",
        {},
        "<file>: <path>.repo: <value> is not owner/repo<hint>",
    ),
    (
        "duplicate-names",
        "runners:\n  - name_prefix: ci\n    count: 2\n    repo: o/r\n"
        "  - name: CI-2\n    repo: o/r\n",
        {},
        "<file>: <path>: runner name <name> is also used by <other path>; "
        "names must be unique (case-insensitive)",
    ),
    (
        "jit-persistent",
        "runners:\n  - name: ci\n    repo: o/r\n    ephemeral: false\n    registration: jit\n",
        {},
        "<file>: <path>: registration: jit needs ephemeral: true (a JIT runner takes one job); "
        "use registration: token for a persistent runner",
    ),
    (
        "secret-in-file",
        GOOD_RUNNERS + "github:\n  token: ghp_notreallyatoken\n",
        {},
        "<file>: github.<key>: secrets do not belong in this file; set <VARIABLE> in the "
        "environment (e.g. /etc/runnerctl/runnerctl.env)",
    ),
    (
        "app-id-without-key",
        GOOD_RUNNERS,
        {"GITHUB_APP_ID": "12345"},
        "<file>: github.app_id: has no private key; set GITHUB_APP_PRIVATE_KEY_FILE, "
        "GITHUB_APP_PRIVATE_KEY or github.private_key_file",
    ),
    (
        "override-bad-value",
        GOOD_RUNNERS,
        {"GHWFAX__MANAGER__INTERVAL": "soon"},
        "<where>: <value> is not a number",
    ),
    (
        "override-no-section",
        GOOD_RUNNERS,
        {"GHWFAX__DEFAULT__LABELS": "gpu"},
        "<VARIABLE>: not a setting override (use <PREFIX><SECTION>__<KEY>)",
    ),
    (
        "override-no-such-key",
        GOOD_RUNNERS,
        {"GITHUB_WFA_RUNNER_DEFAULTS__LABLES": "gpu"},
        "<VARIABLE>: no such setting<hint>",
    ),
    (
        "inline-key-not-pem",
        GOOD_RUNNERS,
        {"GITHUB_APP_ID": "12345", "GITHUB_APP_PRIVATE_KEY": "not a key"},
        "GITHUB_APP_PRIVATE_KEY: is not a PEM private key "
        "(expected -----BEGIN ... PRIVATE KEY-----)",
    ),
    (
        "bad-url-variable",
        GOOD_RUNNERS,
        {"GITHUB_API_URL": "api.example.com"},
        "<where>: <value> is not an http(s) URL, e.g. https://github.com",
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "variables", "template"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_config_problem_is_in_the_catalogue(
    tmp_path: Path, yaml_text: str | None, variables: dict[str, str], template: str
) -> None:
    path = tmp_path / "runnerctl.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text, encoding="utf-8")

    done = manager(
        ["print-config", "--config", str(path)], clean_environment(tmp_path, **variables), tmp_path
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert_documented(done.stderr.splitlines()[0], template)


# GitHub, downloads and runners: a real `runnerctl-manager once` against the double ----


@pytest.fixture(scope="module")
def github_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The loopback GitHub with the App installed on octo/app only."""
    with Sandbox(repos=["octo/app"], root=tmp_path_factory.mktemp("double")) as double:
        yield double


def write_pool(folder: Path, double: Sandbox, repo: str = "octo/app", **item: Any) -> Path:
    """A one-runner config in ``folder`` that talks to ``double``."""
    extra = "".join(f"    {key}: {value}\n" for key, value in item.items())
    path = folder / "runnerctl.yaml"
    path.write_text(
        f"defaults:\n  base_dir: {folder / 'runners'}\n"
        f"runners:\n  - name: ci-1\n    repo: {repo}\n{extra}"
        f"manager:\n  cache_dir: {folder / 'cache'}\n  state_dir: {folder / 'state'}\n"
        f"github:\n  server_url: {double.server_url}\n  api_url: {double.api_url}\n"
        f"  releases_url: {double.api_url}/repos/actions/runner/releases\n",
        encoding="utf-8",
    )
    return path


def once_problem(config: Path, env: dict[str, str], folder: Path) -> str:
    """Run ``runnerctl-manager once``; what it reported: a slot's ``failed:``, else stderr."""
    done = manager(["once", "--config", str(config)], env, folder)

    assert "Traceback" not in done.stderr
    assert done.returncode == 1, done.stdout + done.stderr
    for line in done.stdout.splitlines():
        outcome = line.partition("  ")[2].strip()
        if outcome.startswith("failed: "):
            return outcome[len("failed: ") :]
    return done.stderr.splitlines()[0]


def app_environment(folder: Path, double: Sandbox, key_file: Path | str) -> dict[str, str]:
    return clean_environment(
        folder, GITHUB_APP_ID=str(double.app_id), GITHUB_APP_PRIVATE_KEY_FILE=str(key_file)
    )


def another_key(path: Path) -> Path:
    """A valid RSA key that belongs to no App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def test_app_not_installed(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double, repo="else/where")
    env = app_environment(tmp_path, github_double, github_double.private_key_file)

    problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "the GitHub App <app id> is not installed on <repository or organization> <target>: "
        "install it there with the permission <permission>",
    )


def test_missing_key_file(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double)
    env = app_environment(tmp_path, github_double, tmp_path / "no-such-key.pem")

    problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "cannot read GitHub App private key <key file>: <reason>; "
        "check the path and that runnerctl may read it",
    )


def test_key_file_that_is_not_a_key(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double)
    garbage = tmp_path / "app.pem"
    garbage.write_text("this is not a PEM file\n", encoding="utf-8")

    problem = once_problem(config, app_environment(tmp_path, github_double, garbage), tmp_path)

    assert_documented(
        problem,
        "GitHub App private key <key> is not an unencrypted PEM private key: "
        "download a new key from the App's settings page",
    )


def test_key_of_another_app(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double)
    key = another_key(tmp_path / "other.pem")

    problem = once_problem(config, app_environment(tmp_path, github_double, key), tmp_path)

    assert_documented(
        problem,
        "GitHub refused the JWT of App <app id> (<reason>): check GITHUB_APP_ID, "
        "that the private key belongs to that App, and this host's clock",
    )


def test_bad_token(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double)
    env = clean_environment(tmp_path, GITHUB_TOKEN="ghp_" + "0" * 36)

    problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "GitHub refused GITHUB_TOKEN (401 Bad credentials): the token is wrong, "
        "expired or revoked; set a valid one",
    )


def test_no_credentials(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double)

    problem = once_problem(config, clean_environment(tmp_path), tmp_path)

    assert_documented(
        problem,
        "<scope>: no GitHub credentials: set GITHUB_APP_ID with a private key, or GITHUB_TOKEN",
    )


def test_unknown_repository(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double, repo="octo/no-such-repo")
    env = clean_environment(tmp_path, GITHUB_TOKEN=github_double.token)

    problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "<scope>: not found, or <who> cannot see it (<reason>); "
        "check the name and that it has <permission>",
    )


def test_unknown_user(github_double: Sandbox, tmp_path: Path) -> None:
    config = write_pool(tmp_path, github_double, user="no-such-user-here")
    env = clean_environment(tmp_path, GITHUB_TOKEN=github_double.token)

    problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "<slot>: user <user> does not exist on this host; create it or change the slot's user",
    )


def test_installation_without_write_permission(tmp_path: Path) -> None:
    read_only = {"administration": "read", "organization_self_hosted_runners": "read"}
    with Sandbox(repos=["octo/app"], root=tmp_path / "double", permissions=read_only) as double:
        config = write_pool(tmp_path, double)
        env = app_environment(tmp_path, double, double.private_key_file)
        env["RUNNER_ALLOW_RUNASROOT"] = "1"  # so that a test run as root reaches GitHub

        problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "<scope>: <who> lacks <permission> (<reason>); "
        "grant it in the App's settings, then approve it on the installation",
    )


def test_checksum_mismatch(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], root=tmp_path / "double") as double:
        double.corrupt("2.336.0")
        config = write_pool(tmp_path, double, version="2.336.0")
        env = clean_environment(tmp_path, GITHUB_TOKEN=double.token)

        problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "<tarball> from <url> has SHA-256 <actual>, not the published <expected>; nothing was "
        "kept (a corrupt download or mirror: retry, or check releases_url)",
    )
    assert not list((tmp_path / "cache").glob("*.tar.gz")), "a corrupt tarball was kept"


def test_no_permission_on_base_dir(github_double: Sandbox, tmp_path: Path) -> None:
    # /sys refuses a new folder even to root, so this holds for any user running it.
    config = write_pool(tmp_path, github_double)
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(str(tmp_path / "runners"), "/sys/runnerctl-test-base"), encoding="utf-8"
    )
    env = clean_environment(tmp_path, GITHUB_TOKEN=github_double.token)

    problem = once_problem(config, env, tmp_path)

    assert_documented(problem, "preparing <base_dir>/<slot>: <reason>")


def test_dropped_download(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], root=tmp_path / "double") as double:
        double.add_fault("^/_downloads/", "drop")
        config = write_pool(tmp_path, double)
        env = clean_environment(tmp_path, GITHUB_TOKEN=double.token)

        problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "download of <tarball> from <url> failed <n> times, last: <error>; "
        "check that the host is reachable",
    )


@pytest.fixture
def running_manager(github_double: Sandbox, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``runnerctl-manager run`` with a refused token, its stderr in ``manager.log``."""
    config = write_pool(tmp_path, github_double)
    env = clean_environment(tmp_path, GITHUB_TOKEN="ghp_" + "1" * 36)
    with (tmp_path / "manager.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runnerctl.manager", "run", "--config", str(config)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=COMMAND_TIMEOUT)


def test_a_launch_failure_reaches_the_journal_and_status(
    running_manager: subprocess.Popen[str], tmp_path: Path
) -> None:
    log = tmp_path / "manager.log"
    refused = (
        "GitHub refused GITHUB_TOKEN (401 Bad credentials): the token is wrong, "
        "expired or revoked; set a valid one"
    )

    line = wait_for(lambda: _line_with(log, "launch failed: ci-1 ("), timeout=60)
    message = line.split("launch failed: ci-1 (", 1)[1].removesuffix(")")
    assert_documented(message, refused)

    status = wait_for(lambda: _status_note(tmp_path), timeout=30)
    assert_documented(status.removeprefix("note: ci-1: "), refused)

    running_manager.send_signal(signal.SIGTERM)
    assert running_manager.wait(timeout=COMMAND_TIMEOUT) == 0


def _line_with(path: Path, text: str) -> str:
    """The first line of ``path`` holding ``text``; empty while there is none."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return next((line for line in lines if text in line), "")


def _status_note(folder: Path) -> str:
    """The note ``runnerctl-manager status`` shows for ci-1; empty while there is none."""
    env = clean_environment(folder)
    done = manager(["status", "--state-dir", str(folder / "state")], env, folder)
    notes = [line for line in done.stdout.splitlines() if line.startswith("note: ci-1: ")]
    return notes[0] if notes else ""


# Runner exit codes ---------------------------------------------------------------------


def exit_code_rows() -> dict[int, str]:
    """``code -> action`` from the table in "Runner exit codes"."""
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    section = text.split("## Runner exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", section, re.MULTILINE)
    return {int(code): action for code, action in rows}


def test_exit_code_table_matches_the_code() -> None:
    rows = exit_code_rows()

    assert sorted(rows) == [0, 1, 2, 3, 4, 5, 7]
    for code, action in rows.items():
        assert explain(code).action == action, f"exit code {code}"


# docs/managed-mode.md -----------------------------------------------------------------

#: The examples assume credentials in the environment, as on a real host.
EXAMPLE_ENVIRONMENT = {"GITHUB_TOKEN": "ghp_" + "x" * 36}


def fenced_blocks_in(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of a Markdown text."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def fenced_blocks(name: str, language: str) -> list[str]:
    return fenced_blocks_in((DOCS / name).read_text(encoding="utf-8"), language)


def yaml_examples() -> list[str]:
    return fenced_blocks("managed-mode.md", "yaml")


def test_managed_mode_has_examples() -> None:
    assert len(yaml_examples()) >= 5


@pytest.mark.parametrize("index", range(len(yaml_examples())))
def test_managed_mode_yaml_example_loads(index: int, tmp_path: Path) -> None:
    path = tmp_path / "runnerctl.yaml"
    path.write_text(yaml_examples()[index], encoding="utf-8")

    try:
        config = load_config(path, environ=EXAMPLE_ENVIRONMENT)
    except ConfigError as error:
        pytest.fail(f"example {index + 1} of docs/managed-mode.md does not load:\n{error}")

    assert config.slots(), f"example {index + 1} declares no runner"


def override_examples() -> list[tuple[str, str]]:
    """``NAME=value`` override lines from the shell examples of managed-mode.md."""
    lines = [line for block in fenced_blocks("managed-mode.md", "sh") for line in block.split("\n")]
    found = []
    for line in lines:
        match = re.match(r"^(GHWFAX__\w+|GITHUB_WFA_RUNNER_\w+)=(.*)$", line.strip())
        if match:
            found.append((match.group(1), match.group(2).strip("'\"")))
    return found


def test_managed_mode_override_examples_load(tmp_path: Path) -> None:
    overrides = override_examples()
    path = tmp_path / "runnerctl.yaml"
    path.write_text(GOOD_RUNNERS, encoding="utf-8")

    assert overrides, "managed-mode.md shows no override"
    for name, value in overrides:
        try:
            config = load_config(path, environ={**EXAMPLE_ENVIRONMENT, name: value})
        except ConfigError as error:
            pytest.fail(f"{name}={value} from docs/managed-mode.md does not load: {error}")
        assert name in config.overrides


# docs/operations.md ---------------------------------------------------------------------


def test_operations_status_example_has_the_real_layout() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Status", 1)[1].split("\n## ", 1)[0]
    example = fenced_blocks_in(section, "text")[0].splitlines()

    assert re.fullmatch(r"root: pid \d+, running, config /\S+", example[0])
    assert re.fullmatch(r"last reconcile: \S+ ago", example[1])
    assert re.split(r"\s{2,}", example[3].strip()) == list(COLUMNS)
    rows = [line for line in example[4:] if not line.startswith("note: ")]
    assert all(len(re.split(r"\s{2,}", row.strip())) == len(COLUMNS) for row in rows)
    states = {re.split(r"\s{2,}", row)[1].split(" (")[0] for row in rows}
    assert states <= {state.value for state in SlotState}
