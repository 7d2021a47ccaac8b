"""What the environment adds to the file: setting overrides and GitHub credentials.

Overrides: ``GITHUB_WFA_RUNNER_<SECTION>__<KEY>`` or the short ``GHWFAX__<SECTION>__<KEY>``,
for the ``defaults``, ``manager`` and ``github`` sections, read with pydantic-settings'
nested environment source. When both spellings set one key, the long one wins. An empty
variable is ignored. Values are strings; ``labels`` may be ``a,b`` or a JSON list, ``env``
is a JSON object. The ``github`` section also reads GitHub's own variables
(``GITHUB_API_URL`` and friends, below); those are often set for other tools (every
Actions job has them), so a prefixed override, being meant for runnerctl, wins over them.

Every bad variable is reported by its name, and secret values are never repeated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from runnerctl.config.models import GitHubSection, ManagerSettings, RunnerSettings
from runnerctl.config.problems import closest, describe, problems

PREFIXES = ("GHWFAX__", "GITHUB_WFA_RUNNER_")  # later wins: the long spelling
SECTIONS: dict[str, type[BaseModel]] = {
    "defaults": RunnerSettings,
    "manager": ManagerSettings,
    "github": GitHubSection,
}

#: GitHub's own variables (as in /etc/runnerctl/runnerctl.env) -> github setting.
GITHUB_VARIABLES = {
    "GITHUB_API_URL": "api_url",
    "GITHUB_SERVER_URL": "server_url",
    "GITHUB_APP_ID": "app_id",
    "GITHUB_APP_INSTALLATION_ID": "installation_id",
    "GITHUB_APP_PRIVATE_KEY_FILE": "private_key_file",
}
SECRET_VARIABLES = {"GITHUB_APP_PRIVATE_KEY": "private_key", "GITHUB_TOKEN": "token"}
SECRET_BY_KEY = {key: variable for variable, key in SECRET_VARIABLES.items()}


class _Sections(BaseSettings):
    """The shape pydantic-settings reads: one string per ``<SECTION>__<KEY>`` variable."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        env_nested_max_split=1,  # keep ``ENV__X`` whole so it can be reported, not nested
        case_sensitive=False,
        env_ignore_empty=True,
    )

    defaults: dict[str, str] = {}
    manager: dict[str, str] = {}
    github: dict[str, str] = {}


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, not os.environ."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self._environ = environ
        super().__init__(_Sections, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only ``<PREFIX><SECTION>__<KEY>``: a bare ``<PREFIX><SECTION>`` would be parsed as
        # JSON for the whole section; it is reported instead (see ``_check_names``).
        stems = tuple(f"{self.env_prefix}{section}__".lower() for section in SECTIONS)
        return {
            name.lower(): value
            for name, value in self._environ.items()
            if value != "" and name.lower().startswith(stems) and not name.endswith("__")
        }


@dataclass
class Overrides:
    """Validated override values per section, and the variables they came from."""

    sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in SECTIONS})
    variables: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _original_names(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    """Lower-cased variable name -> the name as the operator wrote it."""
    return {name.lower(): name for name in environ if name.upper().startswith(prefix)}


def _check_names(names: dict[str, str], prefix: str, result: Overrides) -> None:
    """Report prefixed variables that name no section (``GHWFAX__DEFAULT__X``)."""
    for original in names.values():
        section, _, key = original[len(prefix) :].partition("__")
        if key and not key.endswith("__") and section.lower() in SECTIONS:
            continue
        guess = closest(section, SECTIONS)
        hint = f"{prefix}{guess.upper()}__<KEY>" if guess else f"{prefix}DEFAULTS__<KEY>"
        result.problems.append(f"{original}: not a setting override (use {hint})")


def _decode(key: str, value: str) -> object:
    """JSON for structured keys; a labels string may also be plain ``a,b``."""
    if key == "env" or (key == "labels" and value.lstrip().startswith("[")):
        try:
            return json.loads(value)
        except ValueError:
            return value  # validation then says what shape is expected
    return value


def read_overrides(environ: Mapping[str, str]) -> Overrides:
    """Collect and validate the prefixed override variables."""
    result = Overrides()
    for prefix in PREFIXES:
        names = _original_names(environ, prefix)
        if not names:
            continue
        _check_names(names, prefix, result)
        raw = _MappingSource(environ, prefix)()
        for section, model in SECTIONS.items():
            values = {key: _decode(key, value) for key, value in raw.get(section, {}).items()}
            if not values:
                continue
            variable = {key: names[f"{prefix}{section}__{key}".lower()] for key in values}
            _validate(model, values, variable, prefix + section.upper(), result)
            result.sections[section].update(
                {key: value for key, value in values.items() if key in model.model_fields}
            )
            result.variables.extend(variable.values())
    return result


def _validate(
    model: type[BaseModel],
    values: dict[str, object],
    variable: dict[str, str],
    stem: str,
    result: Overrides,
) -> None:
    """Validate one section's override values; replace them with the parsed values."""
    for key in list(values):
        if key not in model.model_fields:
            head = key.partition("__")[0]
            guess = closest(key, model.model_fields)
            if key in ("token", "private_key"):
                hint = f" (secrets come from {SECRET_BY_KEY[key]})"
            elif head in model.model_fields:
                hint = f" (set {stem}__{head.upper()} as a whole, as JSON)"
            else:
                hint = f" (did you mean {stem}__{guess.upper()}?)" if guess else ""
            result.problems.append(f"{variable[key]}: no such setting{hint}")
            del values[key]
    try:
        parsed = model.model_validate(values)
    except ValidationError as error:
        result.problems.extend(problems(error, model, lambda loc: variable[str(loc[0])]))
        values.clear()
        return
    values.update({key: getattr(parsed, key) for key in values})


def read_github(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """GitHub endpoints and credentials from GitHub's variables: (values, problems)."""
    found = {var: environ[var] for var in GITHUB_VARIABLES if environ.get(var, "") != ""}
    values: dict[str, Any] = {}
    lines: list[str] = []
    for variable, text in found.items():
        key = GITHUB_VARIABLES[variable]
        try:
            values[key] = getattr(GitHubSection.model_validate({key: text}), key)
        except ValidationError as error:
            lines += [
                f"{variable}: {describe(details, GitHubSection)}" for details in error.errors()
            ]
    pem = environ.get("GITHUB_APP_PRIVATE_KEY", "")
    if pem:
        # systemd environment files hold one line; accept a PEM written with \n escapes.
        if "\n" not in pem:
            pem = pem.replace("\\n", "\n")
        if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
            lines.append(
                "GITHUB_APP_PRIVATE_KEY: is not a PEM private key "
                "(expected -----BEGIN ... PRIVATE KEY-----)"
            )
        values["private_key"] = SecretStr(pem)
    if pem and "private_key_file" in values:
        lines.append(
            "GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_FILE are both set; keep one"
        )
    token = environ.get("GITHUB_TOKEN", "").strip()
    if token:
        values["token"] = SecretStr(token)
    return values, lines
