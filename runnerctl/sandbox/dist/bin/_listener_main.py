"""Entry point of bin/Runner.Listener: picks the command and returns its exit code."""

from __future__ import annotations

import sys

import _runner_build


def main(argv: list[str]) -> int:
    """Run one listener command; the return value is the process exit code."""
    lowered = [arg.lower() for arg in argv]
    if "--version" in lowered:
        print(_runner_build.VERSION)
        return 0
    print("not implemented yet", file=sys.stderr)
    return 1
