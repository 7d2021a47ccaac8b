"""Entry point of bin/Runner.Listener: pick the command and turn its outcome into a code.

Imports are lazy: ``--version`` and ``run`` must start fast, because the benchmark starts
hundreds of listeners.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _runner_args import CommandSettings
from _runner_common import VERSION, ReturnCode, RunnerError, load_env_file, runner_root, say

COMMIT = "0000000000000000000000000000000000000000"


def main(argv: list[str]) -> int:
    """Run one listener command; the return value is the process exit code."""
    root = runner_root()
    load_env_file(root)
    # Parsing takes every ACTIONS_RUNNER_INPUT_* variable out of os.environ.
    settings = CommandSettings(argv)
    if settings.flag("version"):
        say(VERSION)
        return ReturnCode.SUCCESS
    if settings.flag("commit"):
        say(COMMIT)
        return ReturnCode.SUCCESS
    if settings.flag("help"):
        _usage()
        return ReturnCode.SUCCESS
    settings.warn_unknown()
    try:
        return _dispatch(settings, root)
    except RunnerError as error:
        sys.stderr.write(f"An error occurred: {error}\n")
        return ReturnCode.TERMINATED_ERROR
    except KeyboardInterrupt:
        return ReturnCode.TERMINATED_ERROR
    except Exception as error:
        # The real Main turns any unexpected crash into RetryableError (2).
        sys.stderr.write(f"Unhandled exception: {type(error).__name__}: {error}\n")
        return ReturnCode.RETRYABLE_ERROR


def _dispatch(settings: CommandSettings, root: Path) -> int:
    command = settings.command
    if command == "configure":
        from _runner_configure import configure

        return configure(settings, root)
    if command == "remove":
        from _runner_configure import remove

        return remove(settings, root)
    if settings.flag("check"):
        from _runner_check import check

        return check(settings)
    if command == "warmup":
        return ReturnCode.SUCCESS
    from _runner_run import run

    return run(settings, root)


def _usage() -> None:
    say("Commands:")
    say(" ./config.sh         Configures the runner")
    say(" ./config.sh remove  Unconfigures the runner")
    say(" ./run.sh            Runs the runner interactively. Does not require any options.")
    say()
    say("Options:")
    say(" --help     Prints the help for each command")
    say(" --version  Prints the runner version")
    say(" --commit   Prints the runner commit")
    say()
    say("Config options: --url, --token, --pat, --name, --runnergroup, --labels, --work,")
    say("  --unattended, --replace, --ephemeral, --disableupdate, --no-default-labels")
    say("Remove options: --token, --pat, --local")
    say("Run options: --jitconfig, --once, --startuptype")
