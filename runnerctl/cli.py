"""What both command lines share: an argh parser over a list of commands, and a ``main``
that turns every ``RunnerctlError`` into one line on stderr and its exit status, so no
user ever sees a traceback for a problem runnerctl knows how to name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import argh

from runnerctl.errors import RunnerctlError


def build_parser(
    prog: str, description: str, commands: Sequence[Callable[..., Any]]
) -> argparse.ArgumentParser:
    """An argh parser with one sub-command per function, options named as keywords."""
    parser = argh.ArghParser(prog=prog, description=description)
    argh.add_commands(
        parser,
        list(commands),
        name_mapping_policy=argh.assembling.NameMappingPolicy.BY_NAME_IF_KWONLY,
    )
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Run the command ``argv`` names; errors become one line and an exit status."""
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
