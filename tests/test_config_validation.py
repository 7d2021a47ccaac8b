"""Every validation rule: a failing input and the exact line an operator reads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runnerctl.config import load_config
from runnerctl.errors import ConfigError

OK_ITEM = "  - {name: ok, repo: octo/app}\n"


def problems(path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    assert caught.value.exit_status == 2
    assert str(caught.value) == "\n".join(caught.value.problems)
    return [line.removeprefix(f"{path}: ") for line in caught.value.problems]


CASES = {
    "unknown top-level key": (
        "runners: []\nrunner: []\n",
        "runner: unknown key 'runner' (did you mean runners?)",
    ),
    "unknown defaults key": (
        "defaults: {lables: x}\nrunners: []\n",
        "defaults.lables: unknown key 'lables' (did you mean labels?)",
    ),
    "unknown item key without a close match": (
        "runners:\n  - {name: a, repo: o/r, zzz: 1}\n",
        "runners[0].zzz: unknown key 'zzz' (valid keys: base_dir, count, daemonize, enterprise, "
        "env, ephemeral, labels, name, name_prefix, org, registration, repo, runner_group, "
        "scope, user, version, workdir)",
    ),
    "name and name_prefix": (
        "runners:\n  - {name: a, name_prefix: b, repo: o/r}\n",
        "runners[0]: give either name (one runner) or name_prefix (a pool), not both",
    ),
    "neither name nor name_prefix": (
        "runners:\n" + OK_ITEM + "  - {repo: o/r}\n",
        "runners[1]: needs name (one runner) or name_prefix with count (a pool)",
    ),
    "count below one": (
        "runners:\n  - {name_prefix: ci, count: 0, repo: o/r}\n",
        "runners[0].count: 0 must be at least 1",
    ),
    "count without name_prefix": (
        "runners:\n  - {name: a, count: 2, repo: o/r}\n",
        "runners[0].count: only applies to a pool; use name_prefix instead of name",
    ),
    "no scope at all": (
        "runners:\n  - {name: a}\n",
        "runners[0]: has no scope; add repo: owner/repo, org: NAME or enterprise: SLUG",
    ),
    "two scope keys": (
        "runners:\n  - {name: a, repo: o/r, org: o}\n",
        "runners[0]: repo and org both given; keep one, or say which with scope:",
    ),
    "scope key missing": (
        "runners:\n  - {name: a, scope: org}\n",
        "runners[0].org: is required for scope: org",
    ),
    "scope key of another scope": (
        "runners:\n  - {name: a, scope: repo, repo: o/r, enterprise: e}\n",
        "runners[0].enterprise: does not apply to scope: repo; remove it",
    ),
    "org given as repo": (
        "runners:\n" + OK_ITEM * 2 + "  - {name: c, scope: repo, repo: myorg}\n",
        "runners[2].repo: 'myorg' is not owner/repo (for an organization use scope: org)",
    ),
    "org given as repo, scope inferred": (
        "runners:\n  - {name: a, repo: myorg}\n",
        "runners[0].repo: 'myorg' is not owner/repo (for an organization use org: myorg)",
    ),
    "repo given as org": (
        "runners:\n  - {name: a, scope: org, org: octo/app}\n",
        "runners[0].org: 'octo/app' is not an organization login "
        "(for a repository use scope: repo)",
    ),
    "malformed enterprise": (
        "runners:\n  - {name: a, enterprise: Big_Co}\n",
        "runners[0].enterprise: 'Big_Co' is not an enterprise slug "
        "(lowercase letters, digits and hyphens, as in /enterprises/SLUG)",
    ),
    "bad scope kind": (
        "runners:\n  - {name: a, scope: team, repo: o/r}\n",
        "runners[0].scope: 'team' is not one of 'repo', 'org' or 'enterprise'",
    ),
    "runner name with a space": (
        "runners:\n  - {name: my runner, repo: o/r}\n",
        "runners[0].name: runner name 'my runner' may only use letters, digits, '.', '_' and "
        "'-', starting with a letter or digit",
    ),
    "runner name starting with a dash": (
        "runners:\n  - {name: -x, repo: o/r}\n",
        "runners[0].name: runner name '-x' may only use letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
    ),
    "runner name too long": (
        f"runners:\n  - {{name: {'a' * 65}, repo: o/r}}\n",
        f"runners[0].name: runner name '{'a' * 56}... is longer than 64 characters",
    ),
    "pool names too long": (
        f"runners:\n  - {{name_prefix: {'p' * 62}, count: 10, repo: o/r}}\n",
        f"runners[0].name_prefix: makes names up to 65 characters ('{'p' * 56}...); "
        "GitHub allows 64",
    ),
    "duplicate slot names after expansion": (
        "runners:\n  - {name_prefix: ci, count: 3, repo: o/r}\n  - {name: CI-2, org: o}\n",
        "runners[1]: runner name 'CI-2' is also used by runners[0]; names must be unique "
        "(case-insensitive)",
    ),
    "version with a v": (
        "defaults: {version: v2.336.0}\nrunners: []\n",
        "defaults.version: 'v2.336.0' is neither latest nor X.Y.Z (write 2.336.0)",
    ),
    "version neither latest nor X.Y.Z": (
        "runners:\n  - {name: a, repo: o/r, version: newest}\n",
        "runners[0].version: 'newest' is neither latest nor X.Y.Z (e.g. latest or 2.336.0)",
    ),
    "absolute workdir": (
        "defaults: {workdir: /tmp/work}\nrunners: []\n",
        "defaults.workdir: '/tmp/work' is absolute; "
        "use a folder relative to the runner, e.g. _work",
    ),
    "workdir escaping": (
        "runners:\n  - {name: a, repo: o/r, workdir: w/../../x}\n",
        "runners[0].workdir: 'w/../../x' escapes the runner's folder with '..'; use e.g. _work",
    ),
    "relative base_dir": (
        "defaults: {base_dir: runners}\nrunners: []\n",
        "defaults.base_dir: 'runners' is relative; give an absolute path such as /runners",
    ),
    "relative cache_dir": (
        "manager: {cache_dir: cache}\nrunners: []\n",
        "manager.cache_dir: 'cache' is relative; give an absolute path such as /cache",
    ),
    "jit for a persistent runner": (
        "runners:\n  - {name: a, repo: o/r, ephemeral: false, registration: jit}\n",
        "runners[0]: registration: jit needs ephemeral: true (a JIT runner takes one job); "
        "use registration: token for a persistent runner",
    ),
    "bad registration": (
        "defaults: {registration: pat}\nrunners: []\n",
        "defaults.registration: 'pat' is not one of 'jit' or 'token'",
    ),
    "label with a comma in a list": (
        "defaults: {labels: ['a,b']}\nrunners: []\n",
        "defaults.labels: label 'a,b' contains a comma; list the labels separately",
    ),
    "no labels": (
        "defaults: {labels: ' , '}\nrunners: []\n",
        "defaults.labels: no labels; give at least one, e.g. self-hosted,linux,x64",
    ),
    "env name": (
        "defaults: {env: {'BAD-NAME': x}}\nrunners: []\n",
        "defaults.env: 'BAD-NAME' is not an environment variable name (e.g. HTTP_PROXY)",
    ),
    "env value not a scalar": (
        "defaults: {env: {A: [1]}}\nrunners: []\n",
        "defaults.env: A: [1] is not a string; quote it, e.g. A: ''",
    ),
    "boolean": (
        "defaults: {ephemeral: maybe}\nrunners: []\n",
        "defaults.ephemeral: 'maybe' is not true or false",
    ),
    "interval not positive": (
        "manager: {interval: 0}\nrunners: []\n",
        "manager.interval: 0 must be greater than 0",
    ),
    "metrics address": (
        "manager: {metrics_address: 9100}\nrunners: []\n",
        "manager.metrics_address: '9100' is not host:port, e.g. 127.0.0.1:9100",
    ),
    "bad server url": (
        "github: {server_url: github.com}\nrunners: []\n",
        "github.server_url: 'github.com' is not an http(s) URL, e.g. https://github.com",
    ),
    "section not a mapping": (
        "manager: 5\nrunners: []\n",
        "manager: 5 is not a mapping of key: value",
    ),
    "runners not a list": (
        "runners: {name: a}\n",
        "runners: {'name': 'a'} is not a list of runners",
    ),
    "runners missing": (
        "defaults: {}\n",
        "runners: is missing; list the runners to keep, e.g. runners: [{name: ci, repo: o/r}]",
    ),
    "runner entry not a mapping": (
        "runners:\n  - ci-1\n",
        "runners[0]: 'ci-1' is not a mapping of key: value",
    ),
    "key given twice": (
        "runners: []\nrunners: []\n",
        "line 2, column 1: key 'runners' given twice; keep one",
    ),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_rule(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems(tmp_path / "runnerctl.yaml", text)


def test_secret_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    found = problems(tmp_path / "r.yaml", "github: {token: ghp_leak}\nrunners: []\n")
    assert found == [
        "github.token: secrets do not belong in this file; set GITHUB_TOKEN in the "
        "environment (e.g. /etc/runnerctl/runnerctl.env)"
    ]


def test_enterprise_runner_with_app_only_credentials(tmp_path: Path) -> None:
    text = (
        "runners:\n  - {name: e, enterprise: big-co}\n"
        "github: {app_id: 7, private_key_file: /k.pem}\n"
    )
    found = problems(tmp_path / "r.yaml", text)
    assert found == [
        "runners[0].enterprise: GitHub Apps cannot manage enterprise runners; set GITHUB_TOKEN "
        "to a token with the manage_runners:enterprise scope"
    ]
    path = tmp_path / "r.yaml"
    assert load_config(path, {"GITHUB_TOKEN": "t"}).github.auth_method == "token"


def test_incomplete_app_credentials(tmp_path: Path) -> None:
    found = problems(tmp_path / "r.yaml", "runners: []\n", {"GITHUB_APP_ID": "7"})
    assert found == [
        "github.app_id: has no private key; set GITHUB_APP_PRIVATE_KEY_FILE, "
        "GITHUB_APP_PRIVATE_KEY or github.private_key_file"
    ]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = """\
        defaults: {version: nope}
        manager: {interval: -1}
        runners:
          - {name: a, repo: myorg}
          - {name: b, labels: [x], org: octo/app}
        extra: 1
        """
    found = problems(tmp_path / "r.yaml", text)
    assert [line.split(":")[0] for line in found] == [
        "extra",
        "defaults.version",
        "manager.interval",
        "runners[0].repo",
        "runners[1].org",
    ]


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path / "r.yaml", "runners:\n  - name: a\n   repo: [o/r\n")
    assert len(found) == 1
    assert found[0].startswith("line 3, column ")
    assert "YAML syntax error" in found[0]


def test_missing_empty_and_non_mapping_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, {})
    assert caught.value.problems == [
        f"{missing}: no such file; create it or name another with --config"
    ]
    assert problems(tmp_path / "e.yaml", "# only a comment\n") == [
        "is empty; declare at least a runners: list"
    ]
    assert problems(tmp_path / "l.yaml", "- a\n- b\n") == [
        "the top level is ['a', 'b'], "
        "not a mapping of sections (defaults, runners, manager, github)"
    ]
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path, {})


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("runners: []\n")
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ConfigError, match="permission denied"):
            load_config(path, {})
        return
    # Root reads any file: a child drops to an unprivileged uid once runnerctl is imported.
    code = (
        "import os, sys\nfrom runnerctl.config import load_config\n"
        "from runnerctl.errors import ConfigError\nos.setgid(65534); os.setuid(65534)\n"
        "try:\n load_config(sys.argv[1], {})\nexcept ConfigError as e:\n print(e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == f"{path}: permission denied; run as root or make it readable\n"


def test_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"runners: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.problems == [f"{path}: is not UTF-8 text"]
