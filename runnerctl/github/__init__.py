"""runnerctl's GitHub client: App and token auth, the runners API, releases.

``GitHub.from_settings(config.github, state_dir=...)`` is the entry point; see
docs/contracts.md for the operations and docs/github-app-setup.md for the App.
"""

from runnerctl.github.client import Policy
from runnerctl.github.facade import GitHub
from runnerctl.github.models import (
    Asset,
    JitConfig,
    Release,
    RunnerApplication,
    RunnerInfo,
    Token,
)

__all__ = [
    "Asset",
    "GitHub",
    "JitConfig",
    "Policy",
    "Release",
    "RunnerApplication",
    "RunnerInfo",
    "Token",
]
