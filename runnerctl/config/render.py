"""The effective configuration as plain data, for ``print-config`` (YAML or JSON).

Secrets are replaced by a mask before anything is rendered, so no code path below this
module ever holds them as text.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from runnerctl.config.models import Config, GitHubSettings, RunnerSettings, Slot

MASK = "********"


def _settings(settings: RunnerSettings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    if data["registration"] is None:
        data["registration"] = "auto (jit when ephemeral, token when persistent)"
    return data


def _slot(slot: Slot) -> dict[str, Any]:
    data = slot.model_dump(mode="json", exclude={"scope"})
    return {
        "name": data.pop("name"),
        "scope": slot.scope.kind,
        slot.scope.kind: slot.scope.target,
        **data,
        "directory": str(slot.directory),
        "fingerprint": slot.fingerprint()[:12],
    }


def _github(github: GitHubSettings) -> dict[str, Any]:
    data = github.model_dump(mode="json", exclude={"private_key", "token"})
    data["private_key"] = MASK if github.private_key is not None else None
    data["token"] = MASK if github.token is not None else None
    data["auth_method"] = github.auth_method
    return data


def effective(config: Config) -> dict[str, Any]:
    """Everything the manager will act on: sections after overrides and every slot."""
    return {
        "source": str(config.source),
        "overrides": list(config.overrides),
        "defaults": _settings(config.defaults),
        "manager": config.manager.model_dump(mode="json"),
        "github": _github(config.github),
        "slots": [_slot(slot) for slot in config.slots()],
    }


def render(config: Config, output: str = "yaml") -> str:
    """``effective(config)`` as YAML or JSON text."""
    data = effective(config)
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
