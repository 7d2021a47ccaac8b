"""Read runnerctl.yaml and the environment into a ``Config``, or say everything wrong.

Precedence, lowest first: built-in defaults, the file's ``defaults`` section, the
``GHWFAX__DEFAULTS__*`` / ``GITHUB_WFA_RUNNER_DEFAULTS__*`` variables, and finally each
runner item's own keys. ``manager`` works the same way without the last step; ``github``
takes GitHub's variables (``GITHUB_API_URL``, ...) over the file's section, and
``GHWFAX__GITHUB__*`` over those.

Problems are collected rather than raised one by one: the file, every item and the
environment are checked even after a first failure, and a section that fails keeps its
valid keys so that the checks after it still see what they can.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from runnerctl.config import checks
from runnerctl.config.environment import read_github, read_overrides
from runnerctl.config.fields import show
from runnerctl.config.models import (
    Config,
    GitHubSection,
    GitHubSettings,
    ManagerSettings,
    RunnerItem,
    RunnerSettings,
    Slot,
    derive_api_url,
    resolve,
)
from runnerctl.config.problems import key_path, problems, unknown_key
from runnerctl.errors import ConfigError

DEFAULT_PATH = Path("/etc/runnerctl/runnerctl.yaml")
SECTIONS = ("defaults", "runners", "manager", "github")
SECRET_KEYS = {"token": "GITHUB_TOKEN", "private_key": "GITHUB_APP_PRIVATE_KEY"}
M = TypeVar("M", bound=BaseModel)


def config_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """``path`` if given, else $RUNNERCTL_CONFIG, else /etc/runnerctl/runnerctl.yaml."""
    if path:
        return Path(path)
    return Path(environ.get("RUNNERCTL_CONFIG") or DEFAULT_PATH)


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Load, check and resolve the configuration; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    source = config_path(path, environ)
    return _Builder(source, environ).build(read_document(source))


class _Loader(yaml.SafeLoader):
    """A safe loader that remembers keys given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    mark = key_node.start_mark
                    self.duplicates.append(
                        f"line {mark.line + 1}, column {mark.column + 1}: key "
                        f"{show(key_node.value)} given twice; keep one"
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def read_document(source: Path) -> dict[Any, Any]:
    """The file's top-level mapping; ConfigError when it cannot be read or parsed."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{source}: no such file; create it or name another with --config"]
        ) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a folder; name the YAML file itself"]) from None
    except PermissionError:
        raise ConfigError(
            [f"{source}: permission denied; run as root or make it readable"]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: is not UTF-8 text"]) from None
    except OSError as error:
        raise ConfigError([f"{source}: cannot be read ({error.strerror})"]) from None
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        raise ConfigError([f"{source}: {_yaml_problem(error)}"]) from None
    except yaml.reader.ReaderError as error:
        problem = f"character {error.character!r} at offset {error.position} is not allowed"
        raise ConfigError([f"{source}: is not valid YAML ({problem})"]) from None
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        raise ConfigError(
            [f"{source}: is not valid YAML ({' '.join(str(error).split())})"]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ConfigError([f"{source}: {line}" for line in loader.duplicates])
    if document is None:
        raise ConfigError([f"{source}: is empty; declare at least a runners: list"])
    if not isinstance(document, dict):
        raise ConfigError(
            [
                f"{source}: the top level is {show(document)}, not a mapping of sections "
                "(defaults, runners, manager, github)"
            ]
        )
    return document


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = " ".join(filter(None, [error.context, error.problem]))
    return f"{where}YAML syntax error: {' '.join(what.split()) or 'cannot parse'}"


class _Builder:
    """One load: collects problems while building each part."""

    def __init__(self, source: Path, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.lines: list[str] = []

    def report(self, path: str, message: str) -> None:
        self.lines.append(f"{self.source}: {path}: {message}")

    def build(self, document: dict[Any, Any]) -> Config:
        for key in document:
            if key not in SECTIONS:
                self.report(key_path("", [str(key)]), unknown_key(key, SECTIONS))
        defaults_file = self.section(document, "defaults", RunnerSettings)
        manager_file = self.section(document, "manager", ManagerSettings)
        github_file = self.github_section(document)
        items = self.runner_items(document)

        overrides = read_overrides(self.environ)
        github_env, github_problems = read_github(self.environ)
        self.lines += overrides.problems + github_problems
        defaults = _merge(
            RunnerSettings, _set_values(defaults_file), overrides.sections["defaults"]
        )
        manager = _merge(ManagerSettings, _set_values(manager_file), overrides.sections["manager"])
        github = _github(github_file, github_env, overrides.sections["github"])

        self.check_pool(items, defaults, github)
        if self.lines:
            # One problem, one line, whatever odd characters a key or variable name had.
            raise ConfigError(
                [line.replace("\r", "\\r").replace("\n", "\\n") for line in self.lines]
            )
        return Config(
            source=self.source,
            defaults=defaults,
            runners=tuple(item for _, item, valid in items if valid),
            manager=manager,
            github=github,
            overrides=tuple(overrides.variables),
        )

    def validate(self, model: type[M], raw: object, path: str) -> tuple[M, set[str]]:
        """Validate a mapping: the model of the keys that were fine, and the keys that were not.

        A mapping that is not one fails as a whole (``{"*"}``).
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.report(path, f"{show(raw)} is not a mapping of key: value")
            return model(), {"*"}
        clean = {key: value for key, value in raw.items() if isinstance(key, str)}
        failed = {str(key) for key in raw.keys() - clean.keys()}
        for key in raw.keys() - clean.keys():
            self.report(path, unknown_key(key, model.model_fields))
        try:
            return model.model_validate(clean), failed
        except ValidationError as error:
            self.lines += [
                f"{self.source}: {line}"
                for line in problems(error, model, lambda loc: key_path(path, loc))
            ]
            failed |= {str(details["loc"][0]) for details in error.errors() if details["loc"]}
            kept = {key: value for key, value in clean.items() if key not in failed}
            return model.model_validate(kept), failed

    def section(self, document: dict[Any, Any], key: str, model: type[M]) -> M:
        return self.validate(model, document.get(key), key)[0]

    def github_section(self, document: dict[Any, Any]) -> GitHubSection:
        raw = document.get("github")
        if isinstance(raw, dict):
            raw = dict(raw)
            for key, variable in SECRET_KEYS.items():
                if key in raw:
                    del raw[key]  # never echo it, not even in an error message
                    self.report(
                        f"github.{key}",
                        f"secrets do not belong in this file; set {variable} "
                        "in the environment (e.g. /etc/runnerctl/runnerctl.env)",
                    )
        return self.validate(GitHubSection, raw, "github")[0]

    def runner_items(self, document: dict[Any, Any]) -> list[tuple[str, RunnerItem, bool]]:
        """``(path, item, valid)`` for every entry of ``runners`` that is a mapping."""
        if "runners" not in document:
            self.report(
                "runners",
                "is missing; list the runners to keep, e.g. runners: [{name: ci, repo: o/r}]",
            )
            return []
        raw = document["runners"]
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.report("runners", f"{show(raw)} is not a list of runners")
            return []
        items = []
        for index, entry in enumerate(raw):
            path = f"runners[{index}]"
            item, failed = self.validate(RunnerItem, entry, path)
            if "*" in failed:
                continue
            found = checks.check_item(item, path, skip=failed)
            for where, message in found:
                self.report(where, message)
            items.append((path, item, not failed and not found))
        return items

    def check_pool(
        self,
        items: list[tuple[str, RunnerItem, bool]],
        defaults: RunnerSettings,
        github: GitHubSettings,
    ) -> None:
        expanded: list[tuple[str, list[Slot]]] = []
        for path, item, valid in items:
            if valid:
                expanded.append((path, resolve(item, defaults)))
        found = checks.check_pool(expanded)
        enterprise = [path for path, item, valid in items if valid and item.enterprise]
        found += checks.check_credentials(github, enterprise)
        for where, message in found:
            self.report(where, message)


def _set_values(model: BaseModel) -> dict[str, Any]:
    return {key: getattr(model, key) for key in model.model_fields_set}


def _merge(model: type[M], lower: dict[str, Any], higher: dict[str, Any]) -> M:
    """``higher`` over ``lower``; the runner ``env`` mapping merges key by key."""
    merged = {**lower, **higher}
    if "env" in lower and "env" in higher:
        merged["env"] = {**lower["env"], **higher["env"]}
    return model.model_validate(merged)


def _github(
    section: GitHubSection, variables: dict[str, Any], overrides: dict[str, Any]
) -> GitHubSettings:
    """The file's section, then GitHub's variables, then runnerctl's own overrides."""
    values = {key: getattr(section, key) for key in GitHubSection.model_fields}
    values.update(variables)
    values.update(overrides)
    if values["api_url"] is None:
        values["api_url"] = derive_api_url(values["server_url"])
    return GitHubSettings.model_validate(values)
