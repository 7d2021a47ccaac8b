"""Command-line and environment inputs, parsed by the real runner's rules.

The real CommandSettings is forgiving in ways runnerctl must live with, so this copies the
behaviour, not the code:

- only ``--name value`` works; ``--name=value`` is an unknown option named "name=value";
- a value starting with ``-`` is dropped; unknown options only warn;
- names are case-insensitive and the first of duplicates wins;
- ``ACTIONS_RUNNER_INPUT_<NAME>`` supplies any input the command line did not; values are
  trimmed, empty ones ignored, and flags accept only "true"/"false" (``bool.TryParse``);
- every ``ACTIONS_RUNNER_INPUT_*`` variable leaves our environment once read, so a job
  started by this listener never sees a token or JIT config.
"""

from __future__ import annotations

import os

from _runner_common import say

INPUT_PREFIX = "ACTIONS_RUNNER_INPUT_"

COMMANDS = ("configure", "remove", "run", "warmup")
GENERIC_FLAGS = ("help", "version", "commit", "check")

# Per command: (arguments taking a value, flags). Mirrors the real validOptions table.
VALID_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "configure": (
        (
            "url",
            "token",
            "pat",
            "name",
            "runnergroup",
            "labels",
            "work",
            "auth",
            "username",
            "monitorsocketaddress",
            "windowslogonaccount",
            "windowslogonpassword",
        ),
        (
            "unattended",
            "replace",
            "ephemeral",
            "disableupdate",
            "no-default-labels",
            "runasservice",
            "generateserviceconfig",
        ),
    ),
    "remove": (("token", "pat"), ("unattended", "local")),
    "run": (("jitconfig", "startuptype"), ("once",)),
    "warmup": ((), ()),
}
# --check takes --url and --pat as well.
CHECK_ARGS = ("url", "pat")
SECRET_NAMES = ("token", "pat", "jitconfig", "windowslogonpassword")
ALL_FLAGS = frozenset(flag for _, flags in VALID_OPTIONS.values() for flag in flags) | frozenset(
    GENERIC_FLAGS
)


class CommandSettings:
    """The parsed inputs of one listener invocation."""

    def __init__(self, argv: list[str], environ: dict[str, str] | None = None) -> None:
        self.commands: list[str] = []
        self._args: dict[str, str] = {}
        self._flags: set[str] = set()
        self._options: list[str] = []
        self._parse(argv)
        self._env = take_env_inputs(os.environ if environ is None else environ)

    @property
    def command(self) -> str:
        """The first command named on the line; no command means run."""
        for name in self.commands:
            if name.lower() in COMMANDS:
                return name.lower()
        return "run"

    def get(self, name: str) -> str | None:
        """The value of argument ``name``: the command line first, then the environment."""
        return self._args.get(name) or self._env.get(name) or None

    def flag(self, name: str) -> bool:
        """Whether flag ``name`` is on; an environment value counts only if it is "true"."""
        if name in self._flags:
            return True
        return self._env.get(name, "").lower() == "true"

    def warn_unknown(self) -> None:
        """Say which options the command does not know; the real runner only warns."""
        command = self.command
        valid_args, valid_flags = VALID_OPTIONS[command]
        known = set(valid_args) | set(valid_flags) | set(GENERIC_FLAGS)
        if self.flag("check"):
            known |= set(CHECK_ARGS)
        unknown = [name for name in self._options if name not in known]
        unknown += [name for name in self.commands if name.lower() not in COMMANDS]
        if unknown:
            say(
                f"Unrecognized command-line input arguments for command {command}: "
                f"'{', '.join(unknown)}'. For usage refer to: ./config.sh --help"
            )

    def _parse(self, argv: list[str]) -> None:
        pending: str | None = None
        for raw in argv:
            arg = raw.strip()
            if arg.startswith("--"):
                name = arg[2:].lower()
                pending = None
                if name and name not in self._options:
                    self._options.append(name)
                if name in ALL_FLAGS:
                    self._flags.add(name)
                elif name:
                    pending = name
                continue
            if arg.startswith("-"):
                # The real parser drops a value that looks like an option.
                pending = None
                continue
            if pending is not None:
                self._args.setdefault(pending, arg)
                pending = None
            else:
                self.commands.append(arg)


def take_env_inputs(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """Read and remove every ACTIONS_RUNNER_INPUT_* variable; names become lower case."""
    inputs: dict[str, str] = {}
    for key in list(environ):
        if key.upper().startswith(INPUT_PREFIX):
            value = environ.pop(key).strip()
            name = key[len(INPUT_PREFIX) :].lower()
            if value and name not in inputs:
                inputs[name] = value
    return inputs
