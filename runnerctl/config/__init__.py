"""runnerctl's configuration: models, loading, environment overrides, slot expansion.

``load_config()`` reads runnerctl.yaml and the environment and returns a ``Config``,
or raises ``ConfigError`` with one line per problem. ``Config.slots()`` expands the
runner items into resolved ``Slot``s. See docs/configuration.md for every key.
"""

from __future__ import annotations

from runnerctl.config.loader import DEFAULT_PATH, config_path, load_config
from runnerctl.config.models import (
    Config,
    GitHubSettings,
    ManagerSettings,
    RunnerItem,
    RunnerSettings,
    Slot,
)

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "GitHubSettings",
    "ManagerSettings",
    "RunnerItem",
    "RunnerSettings",
    "Slot",
    "config_path",
    "load_config",
]
