"""``runnerctl-manager``: the command line of the service that keeps runners online.

Each command is a small function beside the others in ``COMMANDS``; ``main`` dispatches
with argh and turns every ``RunnerctlError`` into its message on stderr and its exit
status, so no user ever sees a traceback for a problem runnerctl knows how to name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import argh

from runnerctl.config import load_config
from runnerctl.config.render import render
from runnerctl.demo import demo
from runnerctl.errors import RunnerctlError
from runnerctl.supervisor.commands import once, run, status

CONFIG_HELP = "configuration file; without it $RUNNERCTL_CONFIG, else /etc/runnerctl/runnerctl.yaml"


@argh.arg("--config", help=CONFIG_HELP)
@argh.arg("--format", choices=("yaml", "json"), help="output format")
def print_config(*, config: str | None = None, format: str = "yaml") -> None:
    """Print the effective configuration: defaults after overrides and every slot."""
    sys.stdout.write(render(load_config(config), format))


COMMANDS: list[Callable[..., Any]] = [run, once, status, print_config, demo]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argh.ArghParser(
        prog="runnerctl-manager",
        description="Keep a pool of self-hosted GitHub Actions runners registered and online.",
    )
    argh.add_commands(
        parser, COMMANDS, name_mapping_policy=argh.assembling.NameMappingPolicy.BY_NAME_IF_KWONLY
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``runnerctl-manager`` and ``python -m runnerctl.manager``."""
    parser = build_parser()
    try:
        argh.dispatch(parser, argv=None if argv is None else list(argv))
    except RunnerctlError as error:
        print(error, file=sys.stderr)
        sys.exit(error.exit_status)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (print-config | head); nothing left worth saying.
        sys.stderr.close()
        sys.exit(1)


if __name__ == "__main__":
    main()
