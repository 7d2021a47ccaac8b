"""Environment overrides and GitHub variables: precedence, and errors that name the variable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runnerctl.config import Config, load_config
from runnerctl.errors import ConfigError

FILE = """\
defaults:
  version: 2.335.0
  workdir: file-work
  env: {FROM_FILE: "1", SHARED: file}
manager:
  interval: 5
runners:
  - {name: plain, repo: octo/app}
  - {name: own, repo: octo/app, version: 2.329.0, env: {SHARED: item}}
"""


def load(tmp_path: Path, environ: dict[str, str], text: str = FILE) -> Config:
    path = tmp_path / "runnerctl.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ)


def problems(tmp_path: Path, environ: dict[str, str], text: str = FILE) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, environ, text)
    return caught.value.problems


def test_precedence_item_over_environment_over_file_over_built_in(tmp_path: Path) -> None:
    environ = {
        "GHWFAX__DEFAULTS__VERSION": "2.336.0",
        "GHWFAX__DEFAULTS__ENV": '{"SHARED": "env", "FROM_ENV": "2"}',
    }
    config = load(tmp_path, environ)
    plain, own = config.slots()

    assert config.defaults.version == "2.336.0"  # environment over the file
    assert plain.version == "2.336.0"
    assert own.version == "2.329.0"  # the item's own value wins
    assert plain.workdir == "file-work"  # the file over the built-in default
    assert plain.runner_group == "Default"  # built-in
    assert plain.env == {"FROM_FILE": "1", "SHARED": "env", "FROM_ENV": "2"}
    assert own.env == {"FROM_FILE": "1", "SHARED": "item", "FROM_ENV": "2"}
    assert sorted(config.overrides) == ["GHWFAX__DEFAULTS__ENV", "GHWFAX__DEFAULTS__VERSION"]


def test_long_prefix_wins_over_short(tmp_path: Path) -> None:
    environ = {
        "GHWFAX__DEFAULTS__WORKDIR": "short",
        "GITHUB_WFA_RUNNER_DEFAULTS__WORKDIR": "long",
        "GHWFAX__DEFAULTS__RUNNER_GROUP": "only-short",
    }
    slot = load(tmp_path, environ).slots()[0]
    assert (slot.workdir, slot.runner_group) == ("long", "only-short")


def test_value_types_from_strings(tmp_path: Path) -> None:
    environ = {
        "GHWFAX__DEFAULTS__EPHEMERAL": "false",
        "GHWFAX__DEFAULTS__LABELS": "self-hosted, gpu",
        "GHWFAX__DEFAULTS__BASE_DIR": "/srv/r",
        "GHWFAX__DEFAULTS__USER": "",  # empty: ignored
        "GITHUB_WFA_RUNNER_MANAGER__STOP_TIMEOUT": "30",
        "GHWFAX__MANAGER__METRICS_ADDRESS": "127.0.0.1:9100",
    }
    config = load(tmp_path, environ)
    slot = config.slots()[0]
    assert slot.ephemeral is False and slot.registration == "token"
    assert slot.labels == ("self-hosted", "gpu")
    assert slot.directory == Path("/srv/r/plain")
    assert slot.user is None
    assert config.manager.stop_timeout == 30
    assert config.manager.interval == 5  # the file's value survives other overrides
    assert config.manager.metrics_address == "127.0.0.1:9100"

    listed = load(tmp_path, {"GHWFAX__DEFAULTS__LABELS": '["a", "b"]'})
    assert listed.defaults.labels == ("a", "b")


def test_bad_values_name_the_variable(tmp_path: Path) -> None:
    environ = {
        "GHWFAX__DEFAULTS__VERSION": "2.x",
        "GITHUB_WFA_RUNNER_MANAGER__INTERVAL": "soon",
        "GHWFAX__DEFAULTS__EPHEMERAL": "perhaps",
        "GHWFAX__DEFAULTS__ENV": "A=1",
    }
    assert sorted(problems(tmp_path, environ)) == [
        "GHWFAX__DEFAULTS__ENV: 'A=1' is not a mapping of NAME: value",
        "GHWFAX__DEFAULTS__EPHEMERAL: 'perhaps' is not true or false",
        "GHWFAX__DEFAULTS__VERSION: '2.x' is neither latest nor X.Y.Z (e.g. latest or 2.336.0)",
        "GITHUB_WFA_RUNNER_MANAGER__INTERVAL: 'soon' is not a number",
    ]


def test_unknown_variables_get_a_suggestion(tmp_path: Path) -> None:
    environ = {
        "GHWFAX__DEFAULTS__VERSON": "latest",
        "GHWFAX__DEFAULT__LABELS": "x",
        "GITHUB_WFA_RUNNER_MANAGER__ZZZ": "1",
        "GHWFAX__DEFAULTS__ENV__HTTP_PROXY": "http://p",
    }
    assert sorted(problems(tmp_path, environ)) == [
        "GHWFAX__DEFAULTS__ENV__HTTP_PROXY: no such setting "
        "(set GHWFAX__DEFAULTS__ENV as a whole, as JSON)",
        "GHWFAX__DEFAULTS__VERSON: no such setting (did you mean GHWFAX__DEFAULTS__VERSION?)",
        "GHWFAX__DEFAULT__LABELS: not a setting override (use GHWFAX__DEFAULTS__<KEY>)",
        "GITHUB_WFA_RUNNER_MANAGER__ZZZ: no such setting",
    ]


def test_environment_problems_come_with_file_problems(tmp_path: Path) -> None:
    text = "defaults: {version: bad}\nrunners: []\n"
    found = problems(tmp_path, {"GHWFAX__DEFAULTS__WORKDIR": "/abs"}, text)
    assert found == [
        f"{tmp_path / 'runnerctl.yaml'}: defaults.version: 'bad' is neither latest nor X.Y.Z "
        "(e.g. latest or 2.336.0)",
        "GHWFAX__DEFAULTS__WORKDIR: '/abs' is absolute; "
        "use a folder relative to the runner, e.g. _work",
    ]


def test_github_variables_override_the_file(tmp_path: Path) -> None:
    text = FILE + "github:\n  server_url: https://ghe.example.com\n  app_id: 1\n"
    config = load(
        tmp_path,
        {
            "GITHUB_SERVER_URL": "https://ghe.other.example/",
            "GITHUB_APP_ID": "99",
            "GITHUB_APP_INSTALLATION_ID": "1234",
            "GITHUB_APP_PRIVATE_KEY_FILE": "/etc/runnerctl/app.pem",
        },
        text,
    )
    github = config.github
    assert github.server_url == "https://ghe.other.example"
    assert github.api_url == "https://ghe.other.example/api/v3"
    assert (github.app_id, github.installation_id) == ("99", 1234)
    assert github.private_key_file == Path("/etc/runnerctl/app.pem")
    assert github.auth_method == "app"

    api = load(tmp_path, {"GITHUB_API_URL": "http://127.0.0.1:8080"}).github
    assert api.api_url == "http://127.0.0.1:8080"


def test_bad_github_variables(tmp_path: Path) -> None:
    environ = {
        "GITHUB_APP_INSTALLATION_ID": "abc",
        "GITHUB_API_URL": "api.github.com",
        "GITHUB_APP_ID": "7",
        "GITHUB_APP_PRIVATE_KEY_FILE": "/k.pem",
        "GITHUB_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
    }
    assert sorted(problems(tmp_path, environ)) == [
        "GITHUB_API_URL: 'api.github.com' is not an http(s) URL, e.g. https://github.com",
        "GITHUB_APP_INSTALLATION_ID: 'abc' is not a whole number",
        "GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE are both set; keep one",
    ]


def test_a_bad_private_key_is_reported_without_its_value(tmp_path: Path) -> None:
    found = problems(tmp_path, {"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY": "hunter2"})
    assert found == [
        "GITHUB_APP_PRIVATE_KEY: is not a PEM private key "
        "(expected -----BEGIN ... PRIVATE KEY-----)"
    ]


def test_prefixed_github_overrides_win_over_github_variables(tmp_path: Path) -> None:
    environ = {
        "GITHUB_API_URL": "https://api.github.com",  # as every Actions job has it
        "GHWFAX__GITHUB__API_URL": "http://127.0.0.1:9999",
        "GITHUB_WFA_RUNNER_GITHUB__RELEASES_URL": "http://127.0.0.1:9999/releases",
    }
    github = load(tmp_path, environ).github
    assert github.api_url == "http://127.0.0.1:9999"
    assert github.releases_url == "http://127.0.0.1:9999/releases"
    assert problems(tmp_path, {"GHWFAX__GITHUB__TOKEN": "t"}) == [
        "GHWFAX__GITHUB__TOKEN: no such setting (secrets come from GITHUB_TOKEN)"
    ]
