"""Property: any YAML document with any overrides gives a Config or a clean ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runnerctl.config import Config, load_config
from runnerctl.config.models import ManagerSettings, RunnerItem
from runnerctl.config.render import render
from runnerctl.errors import ConfigError

SECRET = "ghp_Pr0pertyS3cret"
KEYS = sorted({*RunnerItem.model_fields, *ManagerSettings.model_fields, "runners", "defaults"})
VALUES = st.sampled_from(
    ["octo/app", "octo", "big-co", "latest", "2.336.0", "_work", "/opt/r", "ci", "jit", "token"]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True), st.text(), VALUES
)


def _tree(children: Any) -> Any:
    keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(0, 3))
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6))


DOCUMENTS = st.one_of(
    st.recursive(SCALARS, _tree, max_leaves=30).map(lambda data: yaml.safe_dump(data)),
    st.text(max_size=200),
    st.builds(
        lambda items: yaml.safe_dump({"runners": items}),
        st.lists(st.dictionaries(st.sampled_from(KEYS), st.one_of(SCALARS, VALUES)), max_size=4),
    ),
)
VARIABLES = st.one_of(
    st.sampled_from(["GHWFAX__DEFAULTS__", "GITHUB_WFA_RUNNER_MANAGER__", "GHWFAX__"]).flatmap(
        lambda prefix: st.sampled_from([*KEYS, "x", "env__a", ""]).map(
            lambda key: prefix + key.upper()
        )
    ),
    st.sampled_from(
        [
            "GITHUB_TOKEN",
            "GITHUB_APP_ID",
            "GITHUB_APP_PRIVATE_KEY",
            "GITHUB_API_URL",
            "GITHUB_SERVER_URL",
            "GITHUB_APP_INSTALLATION_ID",
            "GITHUB_APP_PRIVATE_KEY_FILE",
        ]
    ),
)
ENVIRONS = st.dictionaries(VARIABLES, st.one_of(st.text(max_size=20), VALUES), max_size=4)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=DOCUMENTS, environ=ENVIRONS)
def test_any_input_gives_a_config_or_a_config_error(
    tmp_path: Path, document: str, environ: dict[str, str]
) -> None:
    if "GITHUB_TOKEN" in environ:
        environ["GITHUB_TOKEN"] = SECRET  # recognisable, so a leak into output shows
    path = tmp_path / "runnerctl.yaml"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path, environ)
    except ConfigError as error:
        assert error.problems
        assert all(line and "\n" not in line for line in error.problems)
        assert "Traceback" not in str(error)
        return
    assert isinstance(config, Config)
    text = render(config)
    assert SECRET not in text
