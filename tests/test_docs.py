"""The operator docs against the code: the error catalogue, the exit codes, the examples.

docs/troubleshooting.md gives each message runnerctl prints as a ``### `template` ``
heading, with ``<placeholders>`` for the parts that vary. These tests make the real
code print a representative message from every area (a real ``runnerctl-manager``
process, against the loopback GitHub where GitHub is involved) and check that its
first line matches the entry written for it, so a reworded message fails here until
the catalogue follows; a sweep of the source finds messages with no entry at all. The
YAML examples of docs/managed-mode.md must load, and the status example of
docs/operations.md must have the real layout.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
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
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from runnerctl import errors
from runnerctl.config import load_config
from runnerctl.errors import ConfigError
from runnerctl.runner.exits import explain
from runnerctl.sandbox import Sandbox
from runnerctl.supervisor.states import SlotState
from runnerctl.supervisor.status import COLUMNS
from tests.processes import wait_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
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


def troubleshooting() -> str:
    return (DOCS / "troubleshooting.md").read_text(encoding="utf-8")


def catalogue() -> dict[str, Entry]:
    """Every entry of docs/troubleshooting.md, by template."""
    templates = [match.group(2) for match in HEADING.finditer(troubleshooting())]
    return {template: Entry(template, to_pattern(template)) for template in templates}


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


# The catalogue itself ------------------------------------------------------------------


def test_catalogue_entries_are_distinct_and_specific() -> None:
    templates = [match.group(2) for match in HEADING.finditer(troubleshooting())]

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


#: Calls whose string arguments become a message a user reads. In runnerctl/config/,
#: where problems are collected before being raised, ``append`` and ``report`` count too,
#: and so do the strings checks yield and parsers return.
ERROR_CLASSES = {
    name
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, errors.RunnerctlError)
}
MESSAGE_CALLS = ERROR_CLASSES | {"invalid", "_refusal"}
CONFIG_CALLS = {"append", "report"}


def message_fragments(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, text)`` for each literal part of each user-facing message in ``path``."""
    in_config = path.parent.name == "config"
    handed_back = in_config and path.name != "models.py"  # models return URLs, not problems
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if handed_back and isinstance(node, (ast.Yield, ast.Return)) and node.value is not None:
            yield from _literals(node.value)  # checks and parsers hand their problems back
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if called not in MESSAGE_CALLS and not (in_config and called in CONFIG_CALLS):
            continue
        arguments = node.args[2:] if called == "_refusal" else node.args  # (tarball, member, why)
        for argument in arguments:
            yield from _literals(argument)


def _literals(node: ast.AST) -> Iterator[tuple[int, str]]:
    for part in ast.walk(node):
        if isinstance(part, ast.Constant) and isinstance(part.value, str):
            yield part.lineno, part.value


def test_every_message_in_the_code_is_in_the_catalogue() -> None:
    # A literal part of a message long enough to mean something (a variable part is
    # written as a placeholder) must appear word for word in the troubleshooting page.
    text = troubleshooting()
    missing = []
    for path in sorted((ROOT / "runnerctl").rglob("*.py")):
        if "sandbox" in path.parts or path.name == "docs.py":
            continue  # the double's own errors; the generator of configuration.md
        for line, fragment in message_fragments(path):
            words = fragment.strip(" :;,()'\"")
            if len(words) >= 12 and words not in text:
                missing.append(f"{path.relative_to(ROOT)}:{line}: {words!r}")

    assert not missing, "docs/troubleshooting.md does not mention:\n" + "\n".join(missing)


# Configuration and environment: a real print-config --------------------------------------

GOOD_RUNNERS = "runners:\n  - name: ci\n    repo: octo/app\n"


def config_case(name: str, template: str, yaml: str | None = GOOD_RUNNERS, **env: str) -> Any:
    """One bad input for print-config: the file (None: no file), variables, the entry."""
    return pytest.param(yaml, env, template, id=name)


CONFIG_CASES = [
    config_case(
        "missing-file", "<file>: no such file; create it or name another with --config", None
    ),
    config_case(
        "yaml-syntax",
        "<file>: line <line>, column <column>: YAML syntax error: <what>",
        "runners:\n  - name: a\n    repo: o/r\n  name: b\n",
    ),
    config_case(
        "key-twice",
        "<file>: line <line>, column <column>: key <key> given twice; keep one",
        "runners:\n  - name: a\n    name: b\n    repo: o/r\n",
    ),
    config_case(
        "unknown-key",
        "<file>: <path>: unknown key <key> (<suggestion>)",
        "defaults:\n  lables: gpu\n" + GOOD_RUNNERS,
    ),
    config_case(
        "version-with-v",
        "<where>: <value> is neither latest nor X.Y.Z (write <version>)",
        "defaults:\n  version: v2.336.0\n" + GOOD_RUNNERS,
    ),
    config_case(
        "repo-not-owner-repo",
        "<file>: <path>.repo: <value> is not owner/repo<hint>",
        "runners:\n  - name: ci\n    repo: octo\n",
    ),
    config_case(
        "duplicate-names",
        "<file>: <path>: runner name <name> is also used by <other path>; "
        "names must be unique (case-insensitive)",
        "runners:\n  - {name_prefix: ci, count: 2, repo: o/r}\n  - {name: CI-2, repo: o/r}\n",
    ),
    config_case(
        "jit-persistent",
        "<file>: <path>: registration: jit needs ephemeral: true (a JIT runner takes one job); "
        "use registration: token for a persistent runner",
        "runners:\n  - {name: ci, repo: o/r, ephemeral: false, registration: jit}\n",
    ),
    config_case(
        "secret-in-file",
        "<file>: github.<key>: secrets do not belong in this file; set <VARIABLE> in the "
        "environment (e.g. /etc/runnerctl/runnerctl.env)",
        GOOD_RUNNERS + "github:\n  token: ghp_notreallyatoken\n",
    ),
    config_case(
        "app-id-without-key",
        "<file>: github.app_id: has no private key; set GITHUB_APP_PRIVATE_KEY_FILE, "
        "GITHUB_APP_PRIVATE_KEY or github.private_key_file",
        GITHUB_APP_ID="12345",
    ),
    config_case(
        "override-bad-value",
        "<where>: <value> is not a number",
        GHWFAX__MANAGER__INTERVAL="soon",
    ),
    config_case(
        "override-no-section",
        "<VARIABLE>: not a setting override (use <PREFIX><SECTION>__<KEY>)",
        GHWFAX__DEFAULT__LABELS="gpu",
    ),
    config_case(
        "override-no-such-key",
        "<VARIABLE>: no such setting<hint>",
        GITHUB_WFA_RUNNER_DEFAULTS__LABLES="gpu",
    ),
    config_case(
        "inline-key-not-pem",
        "GITHUB_APP_PRIVATE_KEY: is not a PEM private key "
        "(expected -----BEGIN ... PRIVATE KEY-----)",
        GITHUB_APP_ID="12345",
        GITHUB_APP_PRIVATE_KEY="not a key",
    ),
    config_case(
        "bad-url-variable",
        "<where>: <value> is not an http(s) URL, e.g. https://github.com",
        GITHUB_API_URL="api.example.com",
    ),
]


@pytest.mark.parametrize(("yaml_text", "variables", "template"), CONFIG_CASES)
def test_config_problem_is_in_the_catalogue(
    tmp_path: Path, yaml_text: str | None, variables: dict[str, str], template: str
) -> None:
    path = tmp_path / "runnerctl.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text, encoding="utf-8")
    env = clean_environment(tmp_path, **variables)

    done = manager(["print-config", "--config", str(path)], env, tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert_documented(done.stderr.splitlines()[0], template)


# GitHub, downloads and runners: a real `runnerctl-manager once` against the double -------


@pytest.fixture(scope="module")
def github_double(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The loopback GitHub with the App installed on octo/app only."""
    with Sandbox(repos=["octo/app"], root=tmp_path_factory.mktemp("double")) as double:
        yield double


def write_pool(folder: Path, double: Sandbox, repo: str = "octo/app", **item: str) -> Path:
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


def credentials(kind: str, double: Sandbox, folder: Path) -> dict[str, str]:
    """The manager's environment for one kind of (good or bad) credentials."""
    app = {"GITHUB_APP_ID": str(double.app_id)}
    if kind == "app":
        return {**app, "GITHUB_APP_PRIVATE_KEY_FILE": str(double.private_key_file)}
    if kind == "missing-key":
        return {**app, "GITHUB_APP_PRIVATE_KEY_FILE": str(folder / "no-such-key.pem")}
    if kind == "not-a-key":
        (folder / "app.pem").write_text("this is not a PEM file\n", encoding="utf-8")
        return {**app, "GITHUB_APP_PRIVATE_KEY_FILE": str(folder / "app.pem")}
    if kind == "other-key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        (folder / "other.pem").write_bytes(pem)
        return {**app, "GITHUB_APP_PRIVATE_KEY_FILE": str(folder / "other.pem")}
    if kind == "bad-token":
        return {"GITHUB_TOKEN": "ghp_" + "0" * 36}
    if kind == "token":
        return {"GITHUB_TOKEN": double.token}
    return {}


def once_case(name: str, template: str, kind: str, repo: str = "octo/app", **item: str) -> Any:
    return pytest.param(kind, repo, item, template, id=name)


ONCE_CASES = [
    once_case(
        "app-not-installed",
        "the GitHub App <app id> is not installed on <repository or organization> <target>: "
        "install it there with the permission <permission>",
        "app",
        repo="else/where",
    ),
    once_case(
        "missing-key-file",
        "cannot read GitHub App private key <key file>: <reason>; "
        "check the path and that runnerctl may read it",
        "missing-key",
    ),
    once_case(
        "not-a-key",
        "GitHub App private key <key> is not an unencrypted PEM private key: "
        "download a new key from the App's settings page",
        "not-a-key",
    ),
    once_case(
        "key-of-another-app",
        "GitHub refused the JWT of App <app id> (<reason>): check GITHUB_APP_ID, "
        "that the private key belongs to that App, and this host's clock",
        "other-key",
    ),
    once_case(
        "bad-token",
        "GitHub refused GITHUB_TOKEN (401 Bad credentials): the token is wrong, "
        "expired or revoked; set a valid one",
        "bad-token",
    ),
    once_case(
        "no-credentials",
        "<scope>: no GitHub credentials: set GITHUB_APP_ID with a private key, or GITHUB_TOKEN",
        "none",
    ),
    once_case(
        "unknown-repository",
        "<scope>: not found, or <who> cannot see it (<reason>); "
        "check the name and that it has <permission>",
        "token",
        repo="octo/no-such-repo",
    ),
    once_case(
        "unknown-user",
        "<slot>: user <user> does not exist on this host; create it or change the slot's user",
        "token",
        user="no-such-user-here",
    ),
    once_case(
        # /sys refuses a new folder even to root, so this holds for any user running it.
        "base-dir-not-writable",
        "preparing <base_dir>/<slot>: <reason>",
        "token",
        base_dir="/sys/runnerctl-test-base",
    ),
]


@pytest.mark.parametrize(("kind", "repo", "item", "template"), ONCE_CASES)
def test_github_and_runner_problem_is_in_the_catalogue(
    github_double: Sandbox,
    tmp_path: Path,
    kind: str,
    repo: str,
    item: dict[str, str],
    template: str,
) -> None:
    config = write_pool(tmp_path, github_double, repo, **item)
    env = clean_environment(tmp_path, **credentials(kind, github_double, tmp_path))

    assert_documented(once_problem(config, env, tmp_path), template)


def test_installation_without_write_permission(tmp_path: Path) -> None:
    read_only = {"administration": "read", "organization_self_hosted_runners": "read"}
    with Sandbox(repos=["octo/app"], root=tmp_path / "double", permissions=read_only) as double:
        config = write_pool(tmp_path, double)
        env = clean_environment(tmp_path, **credentials("app", double, tmp_path))
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
        env = clean_environment(tmp_path, **credentials("token", double, tmp_path))

        problem = once_problem(config, env, tmp_path)

    assert_documented(
        problem,
        "<tarball> from <url> has SHA-256 <actual>, not the published <expected>; nothing was "
        "kept (a corrupt download or mirror: retry, or check releases_url)",
    )
    assert not list((tmp_path / "cache").glob("*.tar.gz")), "a corrupt tarball was kept"


def test_dropped_download(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], root=tmp_path / "double") as double:
        double.add_fault("^/_downloads/", "drop")
        config = write_pool(tmp_path, double)
        env = clean_environment(tmp_path, **credentials("token", double, tmp_path))

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
    env = clean_environment(tmp_path, **credentials("bad-token", github_double, tmp_path))
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


def test_a_launch_failure_reaches_the_log_and_status(
    running_manager: subprocess.Popen[str], tmp_path: Path
) -> None:
    refused = (
        "GitHub refused GITHUB_TOKEN (401 Bad credentials): the token is wrong, "
        "expired or revoked; set a valid one"
    )

    line = wait_for(lambda: line_with(tmp_path / "manager.log", "launch failed: ci-1 ("), 60)
    assert_documented(line.split("launch failed: ci-1 (", 1)[1].removesuffix(")"), refused)
    note = wait_for(lambda: status_note(tmp_path), timeout=30)
    assert_documented(note.removeprefix("note: ci-1: "), refused)

    running_manager.send_signal(signal.SIGTERM)
    assert running_manager.wait(timeout=COMMAND_TIMEOUT) == 0


def line_with(path: Path, text: str) -> str:
    """The first line of ``path`` holding ``text``; empty while there is none."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return next((line for line in lines if text in line), "")


def status_note(folder: Path) -> str:
    """The note ``runnerctl-manager status`` shows for ci-1; empty while there is none."""
    done = manager(
        ["status", "--state-dir", str(folder / "state")], clean_environment(folder), folder
    )
    notes = [line for line in done.stdout.splitlines() if line.startswith("note: ci-1: ")]
    return notes[0] if notes else ""


# Runner exit codes ---------------------------------------------------------------------


def test_exit_code_table_matches_the_code() -> None:
    section = troubleshooting().split("## Runner exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (\w+) \|", section, re.MULTILINE))

    assert sorted(int(code) for code in rows) == [0, 1, 2, 3, 4, 5, 7]
    for code, action in rows.items():
        assert explain(int(code)).action == action, f"exit code {code}"


# docs/managed-mode.md and docs/operations.md ------------------------------------------

#: The examples assume credentials in the environment, as on a real host.
EXAMPLE_ENVIRONMENT = {"GITHUB_TOKEN": "ghp_" + "x" * 36}


def fenced_blocks_in(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of a Markdown text."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def managed_mode_blocks(language: str) -> list[str]:
    return fenced_blocks_in((DOCS / "managed-mode.md").read_text(encoding="utf-8"), language)


def test_managed_mode_has_examples() -> None:
    assert len(managed_mode_blocks("yaml")) >= 5


@pytest.mark.parametrize("index", range(len(managed_mode_blocks("yaml"))))
def test_managed_mode_yaml_example_loads(index: int, tmp_path: Path) -> None:
    path = tmp_path / "runnerctl.yaml"
    path.write_text(managed_mode_blocks("yaml")[index], encoding="utf-8")

    try:
        config = load_config(path, environ=EXAMPLE_ENVIRONMENT)
    except ConfigError as error:
        pytest.fail(f"example {index + 1} of docs/managed-mode.md does not load:\n{error}")

    assert config.slots(), f"example {index + 1} declares no runner"


def test_managed_mode_override_examples_load(tmp_path: Path) -> None:
    variable = re.compile(r"^(GHWFAX__\w+|GITHUB_WFA_RUNNER_\w+)=(.*)$", re.MULTILINE)
    found = variable.findall("\n".join(managed_mode_blocks("sh")))
    overrides = [(name, value.strip("'\"")) for name, value in found]
    path = tmp_path / "runnerctl.yaml"
    path.write_text(GOOD_RUNNERS, encoding="utf-8")

    assert overrides, "managed-mode.md shows no override"
    for name, value in overrides:
        try:
            config = load_config(path, environ={**EXAMPLE_ENVIRONMENT, name: value})
        except ConfigError as error:
            pytest.fail(f"{name}={value} from docs/managed-mode.md does not load: {error}")
        assert name in config.overrides


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
