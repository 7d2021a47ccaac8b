"""``run``: hold a session, take jobs, and stop the way the real listener stops.

One main loop waits in ``select`` on three things: a wakeup pipe the signal handlers
write to, a pipe the poller thread writes to when a message arrives, and the running
worker's pidfd. Handlers only record; every decision is made here.
"""

from __future__ import annotations

import os
import queue
import select
import signal
from pathlib import Path
from typing import Any

from _runner_args import CommandSettings
from _runner_common import (
    RUNNER_FILE,
    VERSION,
    ReturnCode,
    RunnerError,
    delete_config_files,
    say,
    say_error,
    timestamp,
)
from _runner_jobs import Job
from _runner_session import (
    AgentGone,
    CredentialsRefused,
    Poller,
    ServiceClient,
    SessionConflict,
    VersionDeprecated,
)

SIGTERM_GRACE = 30.0
RECONNECT_DELAY = 2.0


def run(settings: CommandSettings, root: Path) -> int:
    """The run command: JIT files first if given, then the listener loop."""
    jitconfig = settings.get("jitconfig")
    if jitconfig is not None:
        write_jit_files(root, jitconfig)
    if not (root / RUNNER_FILE).exists():
        say_error("Runner is not configured. Run ./config.sh first.")
        return ReturnCode.TERMINATED_ERROR
    once = settings.flag("once")
    if once:
        say("Warning: '--once' is going to be deprecated; register with '--ephemeral' instead.")
    return Listener(root, jit=jitconfig is not None, once=once).run()


def write_jit_files(root: Path, encoded: str) -> None:
    """Write every file of a JIT config (base64 JSON: name -> base64 content)."""
    import base64
    import binascii
    import json

    try:
        files = json.loads(base64.b64decode(encoded))
        contents = {str(name): base64.b64decode(data) for name, data in files.items()}
    except (ValueError, binascii.Error, AttributeError) as error:
        raise RunnerError("The JIT config is not valid base64-encoded JSON.") from error
    for name, content in contents.items():
        target = root / Path(name).name  # names come from the server; stay in the root
        target.write_bytes(content)
        if name.endswith("_rsaparams"):
            os.chmod(target, 0o600)


class Listener:
    """The message loop of one configured runner."""

    def __init__(self, root: Path, jit: bool, once: bool) -> None:
        self.root = root
        self.client = ServiceClient(root)
        self.ephemeral = jit or bool(self.client.runner.get("ephemeral"))
        self.once = once
        self.disable_update = bool(self.client.runner.get("disableUpdate"))
        self.job: Job | None = None
        self.update_to: str | None = None
        self.events: queue.Queue[Any] = queue.Queue()
        self.poller: Poller | None = None
        self._signal_read, self._signal_write = os.pipe()
        self._event_read, self._event_write = os.pipe()

    def run(self) -> int:
        self._catch_signals()
        code = self._open_session()
        if code is not None:
            return code
        say("√ Connected to GitHub")
        say()
        say(f"Current runner version: '{VERSION}'")
        work = Path(str(self.client.runner.get("workFolder") or "_work"))
        (self.root / work).mkdir(parents=True, exist_ok=True)
        say(f"{timestamp()}: Listening for Jobs")
        self._start_poller()
        return self._loop()

    def _loop(self) -> int:
        while True:
            waits = [self._signal_read, self._event_read]
            timeout = None
            if self.job is not None:
                if self.job.fileno() >= 0:
                    waits.append(self.job.fileno())
                else:
                    timeout = 0.2
            ready, _, _ = select.select(waits, [], [], timeout)
            if self._signal_read in ready:
                number = os.read(self._signal_read, 1)[0]
                return self._shutdown(signal.Signals(number))
            if self.job is not None and self.job.finished():
                code = self._finish_job()
                if code is not None:
                    return code
            if self._event_read in ready:
                os.read(self._event_read, 1)
                code = self._handle(*self.events.get())
                if code is not None:
                    return code

    def _handle(self, kind: str, message: Any) -> int | None:
        """Act on one poller event; a return value ends the listener with that code."""
        if kind == "session-gone":
            code = self._open_session()
            if code is None:
                self._start_poller()
            return code
        kind = str(message.get("type"))
        if kind == "job" and self.job is None:
            self._start_job(message.get("job") or {})
        elif kind == "cancel" and self.job is not None and message.get("jobId") == self.job.id:
            self.job.cancel()
        elif kind == "exit":
            return self._exit_now(int(message.get("code", ReturnCode.RETRYABLE_ERROR)))
        elif kind == "update" and not self.disable_update:
            return self._update(str(message.get("version")))
        return None

    def _start_job(self, job: dict[str, Any]) -> None:
        self.job = Job(job, self.root)
        self._set_busy(True)
        say(f"{timestamp()}: Running job: {self.job.name}")

    def _finish_job(self) -> int | None:
        """Report the ended job; an ephemeral or --once runner stops after it."""
        self._report_job()
        self._set_busy(False)
        if self.update_to is not None:
            return self._update(self.update_to)
        if self.ephemeral or self.once:
            self._stop_poller()
            self.client.delete_session()
            if self.ephemeral:
                delete_config_files(self.root)
            return ReturnCode.SUCCESS
        return None

    def _shutdown(self, received: signal.Signals) -> int:
        """SIGINT/SIGTERM: cancel the job, wait for the worker, close the session, exit 0."""
        say("Exiting...")
        self._stop_poller()
        self._refuse_pending_jobs()
        if self.job is not None:
            self.job.cancel()
            # SIGINT waits as long as the worker takes; SIGTERM gives up after 30 s.
            grace = SIGTERM_GRACE if received == signal.SIGTERM else None
            if not self.job.wait(grace):
                self.job.kill()
            self._report_job()
        self.client.delete_session()
        return ReturnCode.SUCCESS

    def _refuse_pending_jobs(self) -> None:
        """Cancel jobs that arrived but never started, so none is left running server-side."""
        while not self.events.empty():
            kind, message = self.events.get()
            if kind == "message" and message.get("type") == "job":
                job = message.get("job") or {}
                self.client.complete_job(job.get("id"), "Canceled")
                name = job.get("name") or f"job-{job.get('id')}"
                say(f"{timestamp()}: Job {name} completed with result: Canceled")

    def _report_job(self) -> None:
        """Send the ended job's result and print the line the real listener prints."""
        job = self.job
        assert job is not None
        result = job.result()
        job.close()
        self.job = None
        self.client.complete_job(job.id, result)
        say(f"{timestamp()}: Job {job.name} completed with result: {result}")

    def _exit_now(self, code: int) -> int:
        """An injected exit: stop as a crashing listener would, without reporting the job."""
        self._stop_poller()
        if self.job is not None:
            self.job.cancel()
            if not self.job.wait(5.0):
                self.job.kill()
            self.job.close()
            self.job = None
        self.client.delete_session()
        return code

    def _update(self, version: str) -> int | None:
        """Fetch the new version; once no job runs, hand over to _update.sh and exit 3/4."""
        import _runner_update

        if self.update_to is None:
            say("Runner update in progress, do not shutdown runner.")
            if not _runner_update.download(self.root, self.client.runner, version):
                return None
            self.update_to = version
        if self.job is not None:
            return None  # the update waits for the job; _finish_job comes back here
        self._stop_poller()
        self.client.delete_session()
        _runner_update.launch(self.root, version)
        say("Runner will exit shortly for update, should be back online within 10 seconds.")
        if self.ephemeral:
            return ReturnCode.RUN_ONCE_RUNNER_UPDATING
        return ReturnCode.RUNNER_UPDATING

    def _open_session(self) -> int | None:
        """Create the session, retrying while the server is unreachable or failing."""
        while True:
            try:
                self.client.create_session()
                return None
            except SessionConflict:
                say_error("A session for this runner already exists.")
                return ReturnCode.SESSION_CONFLICT
            except AgentGone:
                say_error(
                    "Failed to create a session. The runner registration has been deleted "
                    "from the server, please re-configure."
                )
                delete_config_files(self.root)
                return ReturnCode.SUCCESS
            except CredentialsRefused as error:
                # Not worth retrying, as the real listener decides for an unauthorized call.
                say_error(f"Failed to create session. {error}")
                return ReturnCode.TERMINATED_ERROR
            except VersionDeprecated as error:
                say_error(f"An error occurred: {error}")
                return _deprecated_exit_code()
            except (OSError, RunnerError) as error:
                say_error(f"{timestamp()}: Failed to create session. {error}")
            ready, _, _ = select.select([self._signal_read], [], [], RECONNECT_DELAY)
            if ready:
                return ReturnCode.SUCCESS

    def _start_poller(self) -> None:
        self.poller = Poller(self.client, self.events, self._event_write)
        self.poller.busy = self.job is not None
        self.poller.start()

    def _stop_poller(self) -> None:
        if self.poller is not None:
            self.poller.stopping.set()
            self.poller = None

    def _set_busy(self, busy: bool) -> None:
        if self.poller is not None:
            self.poller.busy = busy

    def _catch_signals(self) -> None:
        """Record SIGINT/SIGTERM in the wakeup pipe; the loop acts on them."""
        os.set_blocking(self._signal_write, False)
        signal.set_wakeup_fd(self._signal_write)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, _record_only)


def _record_only(signum: int, frame: object) -> None:
    """The handler does nothing: set_wakeup_fd already wrote the signal number."""


def _deprecated_exit_code() -> int:
    flag = os.environ.get("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE", "")
    if flag.strip().lower() in ("1", "true", "$true"):
        return ReturnCode.VERSION_DEPRECATED
    return ReturnCode.TERMINATED_ERROR
