"""The runner's environment, built from a short allow-list instead of inherited.

Whatever the manager's environment holds (a GitHub App key, a token, systemd's
``NOTIFY_SOCKET``, its own settings) would otherwise reach every job the runner runs.
So the runner gets only what a login shell would need, the proxy settings the network
may require, ``RUNNER_ALLOW_RUNASROOT`` when the operator set it, and the slot's own
``env``. Secrets for the configure and run steps are added by the caller, through the
runner's ``ACTIONS_RUNNER_INPUT_*`` variables, never on a command line.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_LANG = "C.UTF-8"

#: Variables taken from the manager's environment when set there.
PASSED_THROUGH = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "RUNNER_ALLOW_RUNASROOT",
)

ALLOW_ROOT = "RUNNER_ALLOW_RUNASROOT"
TOKEN_INPUT = "ACTIONS_RUNNER_INPUT_TOKEN"
JITCONFIG_INPUT = "ACTIONS_RUNNER_INPUT_JITCONFIG"


@dataclass(frozen=True)
class Account:
    """The user a runner runs as: ids for ``setuid``, and the login's name and home."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    @classmethod
    def lookup(cls, user: str | None) -> Account:
        """The named user, or the user this process runs as when ``user`` is None."""
        try:
            entry = pwd.getpwnam(user) if user is not None else pwd.getpwuid(os.getuid())
        except KeyError:
            raise LookupError(f"user {user!r} does not exist on this host") from None
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def build(
    account: Account,
    slot_env: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for the runner's processes: allow-list, then the slot's ``env``."""
    source = os.environ if environ is None else environ
    env = {key: source[key] for key in PASSED_THROUGH if source.get(key)}
    env.update({key: value for key, value in source.items() if key.startswith("LC_")})
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", DEFAULT_LANG)
    env["HOME"] = account.home
    env["USER"] = account.name
    env["LOGNAME"] = account.name
    env.update(slot_env)
    return env


def root_allowed(env: Mapping[str, str]) -> bool:
    """True when the operator opted in to running the runner as root.

    The runner's own scripts accept any value, so any non-empty value counts here too.
    """
    return bool(env.get(ALLOW_ROOT))
