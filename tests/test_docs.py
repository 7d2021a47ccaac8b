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


def assert_documented(line: str, entry: str) -> None:
    """``line`` is what runnerctl printed; ``entry`` names the one catalogue entry
    (a part of its template) that must describe it."""
    found = [e for template, e in catalogue().items() if entry in template]
    assert len(found) == 1, f"docs/troubleshooting.md has {len(found)} entries with {entry!r}"
    assert found[0].matches(line), (
        f"runnerctl now prints {line!r}; docs/troubleshooting.md reads {found[0].template!r}"
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
TEXT = (ast.Constant, ast.JoinedStr, ast.IfExp)  # a value that is text, not a call's result


def message_fragments(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, text)`` for each literal part of each user-facing message in ``path``:
    the arguments of the calls above, and text a function puts in a local name first
    (``fix = "..."``) before handing that name to one of them."""
    in_config = path.parent.name == "config"
    handed_back = in_config and path.name != "models.py"  # models return URLs, not problems
    for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        named: set[str] = set()
        for node in ast.walk(function):
            if handed_back and isinstance(node, (ast.Yield, ast.Return)) and node.value:
                yield from _literals(node.value)  # checks and parsers hand problems back
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if called in MESSAGE_CALLS or (in_config and called in CONFIG_CALLS):
                arguments = node.args[2:] if called == "_refusal" else node.args  # the why
                for argument in arguments:
                    yield from _literals(argument)
                    named |= {n.id for n in ast.walk(argument) if isinstance(n, ast.Name)}
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign) or not isinstance(node.value, TEXT):
                continue
            if any(getattr(target, "id", "") in named for target in node.targets):
                yield from _literals(node.value)


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


def config_case(name: str, entry: str, yaml: str | None = GOOD_RUNNERS, **env: str) -> Any:
    """One bad input for print-config: the file (None: no file), variables, the entry."""
    return pytest.param(yaml, env, entry, id=name)


CONFIG_CASES = [
    config_case("missing-file", "<file>: no such file;", None),
    config_case("yaml-syntax", "YAML syntax error", "runners:\n  - {name: a, repo: o/r}\n  x: 1\n"),
    config_case("key-twice", "given twice", "runners:\n  - name: a\n    name: b\n    repo: o/r\n"),
    config_case("unknown-key", ": unknown key", "defaults:\n  lables: gpu\n" + GOOD_RUNNERS),
    config_case("version-v", "X.Y.Z (write", "defaults:\n  version: v2.336.0\n" + GOOD_RUNNERS),
    config_case(
        "repo-not-owner-repo", "is not owner/repo", "runners:\n  - {name: a, repo: octo}\n"
    ),
    config_case(
        "duplicate-names",
        "is also used by",
        "runners:\n  - {name_prefix: ci, count: 2, repo: o/r}\n  - {name: CI-2, repo: o/r}\n",
    ),
    config_case(
        "jit-persistent",
        "registration: jit needs",
        "runners:\n  - {name: ci, repo: o/r, ephemeral: false, registration: jit}\n",
    ),
    config_case("secret-in-file", "secrets do not", GOOD_RUNNERS + "github:\n  token: ghp_x\n"),
    config_case("app-id-without-key", "has no private key", GITHUB_APP_ID="12345"),
    config_case("override-bad-value", "is not a number", GHWFAX__MANAGER__INTERVAL="soon"),
    config_case("override-no-section", "not a setting override", GHWFAX__DEFAULT__LABELS="x"),
    config_case("override-no-key", "no such setting", GITHUB_WFA_RUNNER_DEFAULTS__LABLES="x"),
    config_case(
        "inline-key-not-pem",
        "PRIVATE_KEY: is not a PEM",
        GITHUB_APP_ID="12345",
        GITHUB_APP_PRIVATE_KEY="not a key",
    ),
    config_case("bad-url-variable", "is not an http(s) URL", GITHUB_API_URL="api.example.com"),
]


@pytest.mark.parametrize(("yaml_text", "variables", "entry"), CONFIG_CASES)
def test_config_problem_is_in_the_catalogue(
    tmp_path: Path, yaml_text: str | None, variables: dict[str, str], entry: str
) -> None:
    path = tmp_path / "runnerctl.yaml"
    if yaml_text is not None:
        path.write_text(yaml_text, encoding="utf-8")
    env = clean_environment(tmp_path, **variables)

    done = manager(["print-config", "--config", str(path)], env, tmp_path)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert_documented(done.stderr.splitlines()[0], entry)


#: Bad files and environments that between them make most configuration problems.
BAD_CONFIGS = [
    ("[1, 2]\n", {}),
    ("# nothing\n", {}),
    ("defaults: {}\n", {}),
    ("runners: {a: 1}\nextra: 1\n", {}),
    ("runners:\n  - 3\n  - {name: ok, repo: o/r}\n", {}),
    (
        "defaults:\n  labels: [a, {b: 1}]\n  workdir: /abs\n  base_dir: rel/dir\n"
        "  env: {ACTIONS_RUNNER_INPUT_X: 1, 'bad name': 2, OK: [1]}\n" + GOOD_RUNNERS,
        {},
    ),
    (
        "defaults:\n  labels: ''\n  workdir: ../up\n  base_dir: /a/../b\n  ephemeral: maybe\n"
        "  registration: often\n  runner_group: '-x'\n  user: 'a b'\n  version: [2]\n"
        + GOOD_RUNNERS,
        {},
    ),
    (
        "runners:\n  - {name: a, name_prefix: b, repo: o/r}\n  - {repo: o/r}\n"
        "  - {name: c, count: 2, repo: o/r}\n  - {name: d}\n  - {name: e, repo: o/r, org: o}\n"
        "  - {name: f, scope: org, repo: o/r}\n  - {name: g, scope: repo, repo: o/r, org: o}\n"
        "  - {name: h, enterprise: Bad_Slug}\n  - {name: i, org: o/r}\n  - {name: j, org: -x-}\n"
        "  - {name: k, repo: o}\n  - {name: '', repo: o/r}\n  - {name: '-l', repo: o/r}\n"
        f"  - {{name_prefix: {'x' * 62}, count: 10, repo: o/r}}\n"
        f"  - {{name: {'y' * 70}, repo: o/r}}\n"
        "  - {name: m, repo: o/r, count: 0}\n  - {name_prefix: n, repo: o/r, count: 5000}\n",
        {},
    ),
    (
        "manager:\n  interval: 0\n  keep_versions: 0\n  metrics_address: nope\n  max_restarts: x\n"
        "  stop_timeout: [1]\n  cache_dir: 5\n" + GOOD_RUNNERS,
        {},
    ),
    (
        "github:\n  api_url: ftp://x\n  app_id: 'a b'\n  private_key_file: rel.pem\n"
        "  installation_id: -1\n  private_key: x\n" + GOOD_RUNNERS,
        {},
    ),
    (
        "runners:\n  - {name: e, enterprise: acme}\n",
        {"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY_FILE": "/k"},
    ),
    (
        GOOD_RUNNERS,
        {
            "GHWFAX__MANAGER": "x",
            "GHWFAX__LABELS": "x",
            "GHWFAX__GITHUB__TOKEN": "x",
            "GHWFAX__DEFAULTS__ENV__X": "1",
            "GHWFAX__DEFAULTS__ENV": "not json",
            "GITHUB_WFA_RUNNER_MANAGER__INTERVL": "3",
            "GITHUB_SERVER_URL": "nope",
            "GITHUB_APP_INSTALLATION_ID": "abc",
            "GITHUB_APP_PRIVATE_KEY_FILE": "/k",
            "GITHUB_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\nx",
        },
    ),
]


@pytest.mark.parametrize(("yaml_text", "environ"), BAD_CONFIGS)
def test_every_config_problem_line_has_an_entry(
    tmp_path: Path, yaml_text: str, environ: dict[str, str]
) -> None:
    path = tmp_path / "runnerctl.yaml"
    path.write_text(yaml_text, encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ)

    entries = catalogue().values()
    lost = [line for line in raised.value.problems if not any(e.matches(line) for e in entries)]
    assert not lost, "docs/troubleshooting.md has no entry for:\n" + "\n".join(lost)


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


def once_case(name: str, entry: str, kind: str, repo: str = "octo/app", **item: str) -> Any:
    return pytest.param(kind, repo, item, entry, id=name)


ONCE_CASES = [
    once_case("app-not-installed", "is not installed on", "app", repo="else/where"),
    once_case("missing-key-file", "cannot read GitHub App private key", "missing-key"),
    once_case("not-a-key", "is not an unencrypted PEM", "not-a-key"),
    once_case("key-of-another-app", "refused the JWT", "other-key"),
    once_case("bad-token", "refused GITHUB_TOKEN", "bad-token"),
    once_case("no-credentials", "no GitHub credentials", "none"),
    once_case("unknown-repository", "not found, or", "token", repo="octo/no-such-repo"),
    once_case("unknown-user", "does not exist on this host", "token", user="no-such-user"),
    # /sys refuses a new folder even to root, so this holds for any user running it.
    once_case("base-dir", "the manager cannot write", "token", base_dir="/sys/runnerctl-test"),
]


@pytest.mark.parametrize(("kind", "repo", "item", "entry"), ONCE_CASES)
def test_github_and_runner_problem_is_in_the_catalogue(
    github_double: Sandbox,
    tmp_path: Path,
    kind: str,
    repo: str,
    item: dict[str, str],
    entry: str,
) -> None:
    config = write_pool(tmp_path, github_double, repo, **item)
    env = clean_environment(tmp_path, **credentials(kind, github_double, tmp_path))

    assert_documented(once_problem(config, env, tmp_path), entry)


def test_installation_without_write_permission(tmp_path: Path) -> None:
    read_only = {"administration": "read", "organization_self_hosted_runners": "read"}
    with Sandbox(repos=["octo/app"], root=tmp_path / "double", permissions=read_only) as double:
        config = write_pool(tmp_path, double)
        env = clean_environment(tmp_path, **credentials("app", double, tmp_path))
        env["RUNNER_ALLOW_RUNASROOT"] = "1"  # so that a test run as root reaches GitHub

        problem = once_problem(config, env, tmp_path)

    assert_documented(problem, "lacks <permission> (<reason>); grant it in the App's")


def test_checksum_mismatch(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], root=tmp_path / "double") as double:
        double.corrupt("2.336.0")
        config = write_pool(tmp_path, double, version="2.336.0")
        env = clean_environment(tmp_path, **credentials("token", double, tmp_path))

        problem = once_problem(config, env, tmp_path)

    assert_documented(problem, "not the published <expected>")
    assert not list((tmp_path / "cache").glob("*.tar.gz")), "a corrupt tarball was kept"


def test_dropped_download(tmp_path: Path) -> None:
    with Sandbox(repos=["octo/app"], root=tmp_path / "double") as double:
        double.add_fault("^/_downloads/", "drop")
        config = write_pool(tmp_path, double)
        env = clean_environment(tmp_path, **credentials("token", double, tmp_path))

        problem = once_problem(config, env, tmp_path)

    assert_documented(problem, "failed <n> times")


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
    refused = "refused GITHUB_TOKEN"

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
