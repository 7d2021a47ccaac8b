"""``runnerctl-manager``: the command line of the service that keeps runners online.

Each command is a small function beside the others in ``COMMANDS``; ``runnerctl.cli``
dispatches them and turns every ``RunnerctlError`` into one line and an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import argh

from runnerctl import cli
from runnerctl.config import load_config
from runnerctl.config.render import render
from runnerctl.demo import demo
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
    return cli.build_parser(
        "runnerctl-manager",
        "Keep a pool of self-hosted GitHub Actions runners registered and online.",
        COMMANDS,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``runnerctl-manager`` and ``python -m runnerctl.manager``."""
    cli.dispatch(build_parser(), argv)


if __name__ == "__main__":
    main()
