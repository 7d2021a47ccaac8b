"""Loading valid configurations: slot expansion, resolution, defaults, the example file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from runnerctl.config import DEFAULT_PATH, Config, config_path, load_config
from runnerctl.config.docs import render
from runnerctl.scope import Scope

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "contrib" / "runnerctl.yaml.example"


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "runnerctl.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ or {})


def test_example_config_expands_to_the_documented_slots() -> None:
    config = load_config(EXAMPLE, environ={})
    slots = {slot.name: slot for slot in config.slots()}

    assert list(slots) == ["ci-1", "ci-2", "ci-3", "gpu-1", "release", "legacy-1", "legacy-2"]
    assert slots["ci-2"].scope == Scope("repo", "octo-org/app")
    assert slots["ci-2"].registration == "jit"
    assert slots["gpu-1"].scope == Scope("org", "octo-org")
    assert slots["gpu-1"].labels == ("self-hosted", "linux", "x64", "gpu")
    assert slots["gpu-1"].runner_group == "gpu"
    assert slots["release"].ephemeral is False
    assert slots["release"].registration == "token"
    assert slots["legacy-1"].version == "2.335.0"
    assert slots["ci-1"].version == "latest"
    assert slots["legacy-2"].env == {
        "RUNNER_TOOL_CACHE": "/opt/runnerctl/toolcache",
        "HTTP_PROXY": "http://proxy.internal:3128",
        "NO_PROXY": "localhost,127.0.0.1",
    }
    assert config.manager.metrics_address == "127.0.0.1:9100"
    assert config.github.auth_method == "none"


def test_built_in_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "runners:\n  - {name: solo, repo: octo/app}\n")
    (slot,) = config.slots()

    assert slot.labels == ("self-hosted", "linux", "x64")
    assert (slot.version, slot.workdir, slot.runner_group) == ("latest", "_work", "Default")
    assert slot.ephemeral and slot.daemonize
    assert slot.registration == "jit"
    assert slot.directory == Path("/opt/runnerctl/runners/solo")
    assert slot.user is None and slot.env == {}
    manager = config.manager
    assert (manager.interval, manager.stop_timeout, manager.max_restarts) == (10, 300, 5)
    assert (manager.restart_period, manager.keep_versions, manager.metrics_address) == (60, 3, None)
    assert manager.cache_dir == Path("/var/cache/runnerctl")
    assert manager.state_dir == Path("/run/runnerctl")
    assert (manager.janitor_interval, manager.update_check_interval) == (300, 3600)
    assert config.github.api_url == "https://api.github.com"
    assert config.github.releases_url.endswith("/repos/actions/runner/releases")


def test_pool_names_and_per_item_overrides(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        defaults:
          labels: [self-hosted, Linux]
          ephemeral: false
          env: {A: "1", B: "2"}
          base_dir: /srv/runners
        runners:
          - name_prefix: build
            count: 2
            org: octo
            env: {B: three, C: true}
            workdir: jobs/work
          - name: ent
            scope: enterprise
            enterprise: big-co
            labels: gpu
        """,
    )
    first, second, ent = config.slots()

    assert (first.name, second.name) == ("build-1", "build-2")
    assert first.registration == "token"  # persistent via defaults
    assert first.env == {"A": "1", "B": "three", "C": "true"}
    assert first.workdir == "jobs/work"
    assert first.directory == Path("/srv/runners/build-1")
    assert ent.scope == Scope("enterprise", "big-co")
    assert ent.labels == ("gpu",)
    assert ent.env == {"A": "1", "B": "2"}


def test_labels_are_trimmed_and_deduplicated(tmp_path: Path) -> None:
    config = load(tmp_path, "runners:\n  - {name: a, repo: o/r, labels: ' x , y,X,, z '}\n")
    assert config.slots()[0].labels == ("x", "y", "z")


def test_fingerprint_is_stable_and_changes_with_any_setting(tmp_path: Path) -> None:
    text = "runners:\n  - {name: a, repo: o/r, version: 2.336.0}\n"
    before = load(tmp_path, text).slots()[0]
    again = load(tmp_path, text).slots()[0]
    pinned = load(tmp_path, text.replace("2.336.0", "2.335.0")).slots()[0]
    labelled = load(tmp_path, text.replace("}", ", labels: extra}")).slots()[0]

    assert before.fingerprint() == again.fingerprint()
    assert len({before.fingerprint(), pinned.fingerprint(), labelled.fingerprint()}) == 3


def test_config_path_precedence(tmp_path: Path) -> None:
    assert config_path(None, {}) == DEFAULT_PATH == Path("/etc/runnerctl/runnerctl.yaml")
    assert config_path(None, {"RUNNERCTL_CONFIG": "/x.yaml"}) == Path("/x.yaml")
    assert config_path("/y.yaml", {"RUNNERCTL_CONFIG": "/x.yaml"}) == Path("/y.yaml")

    path = tmp_path / "from-env.yaml"
    path.write_text("runners: [{name: a, repo: o/r}]\n")
    assert load_config(environ={"RUNNERCTL_CONFIG": str(path)}).source == path


def test_empty_runner_list_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, "runners: []\n").slots() == []


def test_ghes_server_url_derives_the_api_url(tmp_path: Path) -> None:
    text = "runners: []\ngithub:\n  server_url: https://ghe.example.com/\n"
    assert load(tmp_path, text).github.api_url == "https://ghe.example.com/api/v3"
    cloud = text.replace("ghe.example.com", "octo.ghe.com")
    assert load(tmp_path, cloud).github.api_url == "https://api.octo.ghe.com"
    explicit = text + "  api_url: https://api.example.com\n"
    assert load(tmp_path, explicit).github.api_url == "https://api.example.com"


def test_auth_method_and_secrets_never_in_repr(tmp_path: Path) -> None:
    text = "runners: []\n"
    assert load(tmp_path, text).github.auth_method == "none"
    pem = "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----"
    app = load(tmp_path, text, {"GITHUB_APP_ID": "42", "GITHUB_APP_PRIVATE_KEY": pem})
    assert app.github.auth_method == "app"
    assert app.github.app_id == "42"
    assert app.github.private_key is not None
    assert "\n" in app.github.private_key.get_secret_value()  # \n escapes became newlines
    token = load(tmp_path, text, {"GITHUB_TOKEN": "ghp_sekrit", "GITHUB_APP_ID": "42"})
    assert token.github.auth_method == "token"
    assert "ghp_sekrit" not in repr(token) and "abc" not in repr(app)


def test_docs_page_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), (
        "regenerate: python -m runnerctl.config.docs > docs/configuration.md"
    )
