"""The exceptions runnerctl raises, one small tree.

Every error a user can meet carries a message that names the thing that is wrong and,
where there is one, the fix. Commands print ``str(error)`` on one line and exit non-zero;
nothing above this tree should ever print a traceback for them.
"""

from __future__ import annotations


class RunnerctlError(Exception):
    """Base of every error runnerctl reports to a user."""

    exit_status = 1


class ConfigError(RunnerctlError):
    """The configuration cannot be used; ``problems`` holds one line per problem."""

    exit_status = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class GitHubError(RunnerctlError):
    """GitHub refused or failed a request in a way retrying will not fix."""


class AuthError(GitHubError):
    """Credentials are missing, malformed, or refused by GitHub."""


class PermissionDenied(GitHubError):
    """The credential works but lacks a permission; the message names it."""


class NotFound(GitHubError):
    """The repository, organization, installation or runner does not exist."""


class Conflict(GitHubError):
    """GitHub reports a conflict, such as a runner name already taken (409)."""


class RunnerBusy(GitHubError):
    """GitHub will not delete a runner that is running a job (422)."""


class Unreachable(GitHubError):
    """GitHub did not answer after every retry."""


class RateLimited(GitHubError):
    """The API budget is spent; ``retry_at`` is the epoch second it comes back."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class DistributionError(RunnerctlError):
    """A runner download could not be resolved, fetched, verified or extracted."""


class ChecksumMismatch(DistributionError):
    """A download's SHA-256 differs from the published one; nothing was kept."""


class RunnerError(RunnerctlError):
    """A runner could not be installed, registered, started or removed."""
