"""The listener's side of the runner protocol (docs/sandbox.md, "Runner protocol").

Every call authenticates with the agent secret from ``.credentials_rsaparams``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from _runner_common import (
    RSA_PARAMS_FILE,
    RUNNER_FILE,
    VERSION,
    HttpError,
    RunnerError,
    http_request,
    read_json,
    say,
    server_message,
    timestamp,
)

# A long poll lasts up to the server's poll_seconds; this only bounds a hung server.
POLL_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0


class SessionConflict(RunnerError):
    """Another live session holds this agent (exit 5)."""


class AgentGone(RunnerError):
    """The server no longer knows this agent (local files go, exit 0)."""


class CredentialsRefused(RunnerError):
    """The agent secret no longer works, e.g. another machine replaced us (exit 1)."""


class VersionDeprecated(RunnerError):
    """The server refuses this runner version (exit 1, or 7 on request)."""


class ServiceClient:
    """Sessions, messages and job results for one configured agent."""

    def __init__(self, root: Path) -> None:
        runner = read_json(root / RUNNER_FILE)
        secret = read_json(root / RSA_PARAMS_FILE)
        self.runner: dict[str, Any] = runner
        self.service = str(runner["serverUrl"]).rstrip("/")
        self.agent_id = int(runner["agentId"])
        self._authorization = f"Bearer {secret['agentSecret']}"
        self.session_id: str | None = None

    def create_session(self) -> None:
        """Open a session; raises SessionConflict, AgentGone or VersionDeprecated."""
        body = {"agentId": self.agent_id, "version": VERSION}
        status, answer = self._call("POST", "/sessions", body, CALL_TIMEOUT)
        if status == 201 and isinstance(answer, dict):
            self.session_id = str(answer["sessionId"])
            return
        message = server_message(answer, f"HTTP {status}")
        if status == 409:
            raise SessionConflict(message)
        if status == 404:
            raise AgentGone(message)
        if status == 401:
            raise CredentialsRefused(message)
        if status == 403 and "deprecated" in message.lower():
            raise VersionDeprecated(message)
        raise HttpError(status, f"Failed to create a session: {message}")

    def delete_session(self) -> None:
        """Close the session; best effort, since we are exiting either way."""
        if self.session_id is None:
            return
        with contextlib.suppress(OSError):
            self._call("DELETE", f"/sessions/{self.session_id}", None, 5.0)
        self.session_id = None

    def poll(self, busy: bool) -> tuple[int, Any]:
        """One long poll, which is also the heartbeat: (status, message or None)."""
        status = "busy" if busy else "idle"
        path = f"/sessions/{self.session_id}/message?status={status}"
        return self._call("GET", path, None, POLL_TIMEOUT)

    def complete_job(self, job_id: Any, result: str) -> None:
        """Report a job's result; a job the server forgot (404) is not an error."""
        for attempt in range(5):
            if attempt:
                time.sleep(0.5)
            try:
                status, _answer = self._call(
                    "POST", f"/jobs/{job_id}/complete", {"result": result}, CALL_TIMEOUT
                )
            except OSError:
                continue
            if status < 500:
                return

    def _call(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
        return http_request(method, self.service + path, self._authorization, body, timeout)


class Poller(threading.Thread):
    """Long-polls for messages in the background and hands them to the main loop.

    Events put on ``events``: ("message", body) and ("session-gone", None). After each
    one a byte goes to ``notify_fd`` so the main loop, waiting in select, wakes up.
    """

    def __init__(self, client: ServiceClient, events: queue.Queue[Any], notify_fd: int) -> None:
        super().__init__(name="poller", daemon=True)
        self.client = client
        self.events = events
        self.notify_fd = notify_fd
        self.busy = False
        self.stopping = threading.Event()

    def run(self) -> None:
        disconnected = False
        while not self.stopping.is_set():
            try:
                status, body = self.client.poll(self.busy)
            except OSError as error:
                if not disconnected:
                    say(
                        f"{timestamp()}: Runner connect error: {error}. Retrying until reconnected."
                    )
                disconnected = True
                self.stopping.wait(1.0)
                continue
            if disconnected:
                say(f"{timestamp()}: Runner reconnected.")
                disconnected = False
            if self.stopping.is_set():
                return
            if status == 200 and isinstance(body, dict):
                self._hand_over(("message", body))
            elif status in (401, 403, 404):
                self._hand_over(("session-gone", None))
                return
            elif status != 204:
                self.stopping.wait(1.0)

    def _hand_over(self, event: tuple[str, Any]) -> None:
        self.events.put(event)
        os.write(self.notify_fd, b"m")
