"""Running the runner's own ``config.sh`` (configure and remove), bounded and quiet.

Secrets go in through ``ACTIONS_RUNNER_INPUT_*`` variables in the child's environment,
which only the same user and root can read, never through argv, which every user can
read in ``/proc/<pid>/cmdline``. The script's output is appended to ``runner.log`` (the
runner masks tokens in it itself) and kept for the error message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runnerctl.runner.environment import Account
from runnerctl.runner.logfile import LOG_NAME, append

log = logging.getLogger(__name__)

#: configure and remove make two or three HTTP calls; a minute is generous.
TIMEOUT = 120.0


@dataclass(frozen=True)
class ScriptResult:
    """What ``config.sh`` said and how it exited."""

    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def reason(self) -> str:
        """The most telling line of the output, for an error message."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for line in reversed(lines):
            if "error" in line.lower() or "fail" in line.lower() or "must" in line.lower():
                return line
        return lines[-1] if lines else f"config.sh exited {self.code} without output"


def run(
    directory: Path,
    args: list[str],
    env: dict[str, str],
    account: Account | None = None,
    timeout: float = TIMEOUT,
) -> ScriptResult:
    """Run ``./config.sh ARGS`` in ``directory`` with exactly ``env``."""
    switch = account if account is not None and account.uid != os.geteuid() else None
    process = subprocess.Popen(
        [str(directory / "config.sh"), *args],
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=switch.uid if switch else None,
        group=switch.gid if switch else None,
        extra_groups=list(switch.groups) if switch else None,
    )
    try:
        raw, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        # The script's children (the listener's configure step) share its new group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raw, _ = process.communicate()
        code = process.returncode
        raw += f"\nrunnerctl: config.sh {args[0]} took over {timeout:.0f}s; killed\n".encode()
    output = raw.decode("utf-8", errors="replace")
    append(directory / LOG_NAME, output)
    log.debug("config.sh %s: exited %s", args[0], code)
    return ScriptResult(code, output)
