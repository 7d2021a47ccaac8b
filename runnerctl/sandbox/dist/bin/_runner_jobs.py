"""One running job: a ``bin/Runner.Worker`` child process and its result.

The worker is a real child of the listener, in the listener's process group, so it shows
in /proc under the listener and dies with the group. It learns the job from one JSON line
on its stdin and is cancelled by a "cancel" line; its exit code is 100 + TaskResult.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

_RESULTS = {100: "Succeeded", 101: "SucceededWithIssues", 102: "Failed", 103: "Canceled"}


class Job:
    """A job handed to this runner and the worker process running it."""

    def __init__(self, message: dict[str, Any], root: Path) -> None:
        import json
        import subprocess

        self.id = message.get("id")
        self.name = str(message.get("name") or f"job-{self.id}")
        self.cancelled = False
        worker = root / "bin" / "Runner.Worker"
        self.process = subprocess.Popen(
            [sys.executable, str(worker), "spawnclient"],
            stdin=subprocess.PIPE,
            cwd=root,
        )
        self._pidfd = _pidfd_open(self.process.pid)
        self._send(json.dumps(message) + "\n")

    def fileno(self) -> int:
        """A descriptor that becomes readable when the worker exits (-1 if none)."""
        return self._pidfd

    def finished(self) -> bool:
        return self.process.poll() is not None

    def cancel(self) -> None:
        """Ask the worker to stop; its result will be Canceled."""
        if not self.cancelled:
            self.cancelled = True
            self._send("cancel\n")

    def kill(self) -> None:
        """End the worker at once, for when the listener cannot wait any longer."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def wait(self, timeout: float | None) -> bool:
        """Wait for the worker to exit; False when ``timeout`` passed first."""
        import subprocess

        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def result(self) -> str:
        """The job's result as the worker reported it."""
        code = self.process.wait()
        if self.cancelled and code != 100:
            return "Canceled"
        return _RESULTS.get(code, "Failed")

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def _send(self, line: str) -> None:
        stdin = self.process.stdin
        if stdin is None:
            return
        try:
            stdin.write(line.encode())
            stdin.flush()
        except OSError:
            pass  # the worker already ended; its exit code tells the story


def _pidfd_open(pid: int) -> int:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return -1
    try:
        return int(opener(pid))
    except OSError:
        return -1
