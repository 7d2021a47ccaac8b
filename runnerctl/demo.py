"""``runnerctl-manager demo``: a real pool against a loopback GitHub, on this machine.

The demo starts the loopback GitHub double (``runnerctl.sandbox``) in this process and
a real ``runnerctl-manager run`` as a child, with a small mixed pool (ephemeral runners
registered just in time, and one persistent runner registered with a token) whose
folders all live in one temporary folder. It feeds the loopback GitHub jobs at a steady
pace and shows what the manager publishes in its status.json.

The manager gets its GitHub address and App credentials the way an operator's service
does, through the environment, and runs in a session of its own: a Ctrl-C on the
terminal reaches only the demo, which then stops the manager the way systemd would
(SIGTERM: running jobs finish), bounded, sweeps anything left in the folder, stops the
double and removes the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import argh

import runnerctl
from runnerctl import procfs
from runnerctl.demo_view import LiveView, SlotRow, Snapshot, count_jobs, slot_rows
from runnerctl.errors import ConfigError, RunnerctlError
from runnerctl.supervisor.status import read_status
from runnerctl.systemd import without_notify_variables

if TYPE_CHECKING:
    from runnerctl.sandbox import Sandbox

log = logging.getLogger(__name__)

REPO = "demo/app"
LABELS = ("self-hosted", "linux", "demo")
#: Seconds between redraws, and between looks at the manager and the job queue.
TICK = 0.25
#: Seconds between new jobs; a new one waits while the queue is as long as the pool.
JOB_EVERY = 0.8
JOB_SECONDS = (0.5, 3.0)
#: The manager's own drain bound (its stop_timeout), and what the demo adds to it
#: before it kills what is left.
STOP_TIMEOUT = 20.0
STOP_GRACE = 15.0
RUNNING_NOTE = "Ctrl-C stops the pool and cleans up."
STOPPING_NOTE = "Stopping: running jobs finish first; Ctrl-C again cuts them short."
HURRIED_NOTE = "Stopping now; Ctrl-C again kills the manager and its runners."
MAX_SLOTS = 16
#: Variables of the caller's environment the manager must not see: they would point
#: it at another GitHub or another config (an Actions job sets several).
FOREIGN_PREFIXES = ("GITHUB_", "GHWFAX__", "RUNNERCTL_")


@argh.arg("--seconds", type=float, help="stop by itself after this many seconds")
@argh.arg("--slots", type=int, help="runners in the pool: one persistent, the rest ephemeral")
@argh.arg("--keep", help="keep the temporary folder (logs, config, status) and print its path")
def demo(*, seconds: float | None = None, slots: int = 4, keep: bool = False) -> None:
    """Run a small pool against a loopback GitHub on this machine; Ctrl-C stops it."""
    if not 1 <= slots <= MAX_SLOTS:
        raise ConfigError([f"--slots: {slots} is not between 1 and {MAX_SLOTS} (e.g. --slots 4)"])
    if seconds is not None and seconds <= 0:
        raise ConfigError([f"--seconds: {seconds} is not positive (e.g. --seconds 30)"])
    folder = Path(tempfile.mkdtemp(prefix="runnerctl-demo-"))
    sys.exit(DemoSession(folder, slots, keep).run(seconds))


def pool_kinds(slots: int) -> dict[str, str]:
    """Slot name -> registration: ``ci-N`` ephemeral (jit), then one persistent (token)."""
    ephemeral = slots - 1 if slots > 1 else 1
    kinds = {f"ci-{number}": "jit" for number in range(1, ephemeral + 1)}
    if slots > 1:
        kinds["persistent"] = "token"
    return kinds


def write_config(folder: Path, kinds: Mapping[str, str]) -> Path:
    """The pool's runnerctl.yaml; GitHub's address and credentials are not in it."""
    ephemeral = sum(kind == "jit" for kind in kinds.values())
    persistent = [name for name, kind in kinds.items() if kind == "token"]
    lines = [
        "# Written by `runnerctl-manager demo`; GitHub comes from the environment.",
        "defaults:",
        f"  labels: [{', '.join(LABELS)}]",
        "  daemonize: false",
        f"  base_dir: {folder / 'runners'}",
        "runners:",
        f"  - {{name_prefix: ci, count: {ephemeral}, repo: {REPO}, ephemeral: true}}",
    ]
    lines += [
        f"  - {{name: {name}, repo: {REPO}, ephemeral: false, registration: token}}"
        for name in persistent
    ]
    lines += [
        "manager:",
        "  interval: 2",
        f"  cache_dir: {folder / 'cache'}",
        f"  state_dir: {folder / 'state'}",
        f"  stop_timeout: {STOP_TIMEOUT:g}",
        "  janitor_interval: 600",
        "  update_check_interval: 3600",
    ]
    path = folder / "runnerctl.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def manager_environment(sandbox: Sandbox, environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without anything GitHub-related, plus the double's
    address and App credentials in the variables an operator would set."""
    env = {
        name: value
        for name, value in without_notify_variables(environ).items()
        if not name.upper().startswith(FOREIGN_PREFIXES)
    }
    package_parent = Path(runnerctl.__file__).resolve().parent.parent
    if package_parent.name not in ("site-packages", "dist-packages"):
        # Run from a checkout: the manager's working folder is the demo's, so it would
        # not find runnerctl without this.
        parts = [str(package_parent), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(part for part in parts if part)
    env.update(
        {
            "GITHUB_APP_ID": str(sandbox.app_id),
            "GITHUB_APP_INSTALLATION_ID": str(sandbox.installation_id),
            "GITHUB_APP_PRIVATE_KEY_FILE": str(sandbox.private_key_file),
            "GHWFAX__GITHUB__API_URL": sandbox.api_url,
            "GHWFAX__GITHUB__SERVER_URL": sandbox.server_url,
            "GHWFAX__GITHUB__RELEASES_URL": f"{sandbox.api_url}/repos/actions/runner/releases",
        }
    )
    if os.geteuid() == 0:
        env["RUNNER_ALLOW_RUNASROOT"] = "1"  # the actions runner refuses root otherwise
    return env


class SignalFlag:
    """SIGINT and SIGTERM only count here; the demo's loop, which wakes every ``TICK``,
    reads the count (a quarter of a second is quick enough for a person)."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._record)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1


def is_api_call(call: Mapping[str, Any]) -> bool:
    """Whether a logged call was a GitHub REST call of the manager's, rather than the
    runners' own protocol, a download, or their registration (made with its token)."""
    path = str(call.get("path", ""))
    return not path.startswith("/_") and call.get("credential") not in ("agent", "remote-auth")


class DemoSession:
    """One run of the demo: its folder, the double, the manager, the job feed, the view."""

    def __init__(self, folder: Path, slots: int, keep: bool, out: TextIO | None = None) -> None:
        self.folder = folder
        self.kinds = pool_kinds(slots)
        self.keep = keep
        self.view = LiveView(out or sys.stdout)
        self.signals = SignalFlag()
        # Imported here: the double stays out of every other command's process.
        from runnerctl.sandbox import Sandbox

        self.sandbox = Sandbox(repos=[REPO], root=folder / "github")
        self.manager: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()
        self.random = random.Random()
        self.next_job = 0.0
        self.jobs_made = 0
        self.calls_seen = 0
        self.api_calls = 0
        self.next_call_count = 0.0
        self.log_file: TextIO | None = None
        self.log_handler: logging.Handler | None = None
        self.log_level = logging.NOTSET
        self.rows: dict[str, SlotRow] = {}

    def run(self, seconds: float | None) -> int:
        """The demo from the first line to the clean-up; the exit status."""
        self.announce(seconds)
        # The double serves from this process; whatever its threads would print on
        # stderr goes to the demo's log, so the screen holds only the table.
        with (self.folder / "demo.log").open("a", encoding="utf-8") as log_file:
            self.log_file = log_file
            with contextlib.redirect_stderr(log_file):
                return self.run_session(seconds)

    def run_session(self, seconds: float | None) -> int:
        status = 1
        self.signals.install()
        try:
            self.start()
            early = self.supervise(seconds)
            code = self.stop_manager()
            self.view.show(self.snapshot(), force=True)
            self.view.close()
            self.report(code, early)
            status = 0 if code == 0 and not early else 1
        finally:
            self.view.close()
            self.clean_up()
            self.signals.restore()
        return status

    # Steps ------------------------------------------------------------------------

    def announce(self, seconds: float | None) -> None:
        """The first line: what this is, how it ends, and where its folder is."""
        ephemeral = sum(kind == "jit" for kind in self.kinds.values())
        pool = f"{ephemeral} ephemeral and {len(self.kinds) - ephemeral} persistent runners"
        until = f"stops after {seconds:g}s or on Ctrl-C" if seconds else "Ctrl-C stops it"
        after = "keeps" if self.keep else "removes"
        self.view.say(
            f"runnerctl demo: a manager keeps {pool} online against a loopback GitHub on "
            f"127.0.0.1, no account needed; {until} and {after} its folder {self.folder}"
        )

    def start(self) -> None:
        """Start the double, write the pool's config and start the manager."""
        self.log_handler = logging.StreamHandler(self.log_file)
        self.log_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        package_logger = logging.getLogger("runnerctl")
        self.log_level = package_logger.level
        package_logger.addHandler(self.log_handler)
        package_logger.setLevel(logging.INFO)
        try:
            self.sandbox.start()
        except OSError as error:
            raise RunnerctlError(f"demo: the loopback GitHub cannot start: {error}") from None
        config = write_config(self.folder, self.kinds)
        env = manager_environment(self.sandbox, os.environ)
        command = [sys.executable, "-m", "runnerctl.manager", "run", "--config", str(config)]
        with (self.folder / "manager.log").open("ab") as out:
            try:
                # A session of its own: a Ctrl-C on the terminal reaches only the demo.
                self.manager = subprocess.Popen(
                    command,
                    cwd=self.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            except OSError as error:
                raise RunnerctlError(
                    f"demo: cannot start the manager with {sys.executable}: {error.strerror} "
                    "(run the demo with a Python this user may execute)"
                ) from None
        log.info("started: manager (pid %d, %s)", self.manager.pid, config)

    def supervise(self, seconds: float | None) -> bool:
        """Feed jobs and show the pool until a signal, the time is up or the output is
        gone; True when the manager ended by itself first."""
        assert self.manager is not None
        deadline = None if seconds is None else time.monotonic() + seconds
        while self.signals.count == 0 and not self.view.gone:
            if self.manager.poll() is not None:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                break
            jobs = self.sandbox.jobs()
            self.feed(jobs)
            self.view.show(self.snapshot(jobs, RUNNING_NOTE))
            time.sleep(TICK)
        return False

    def feed(self, jobs: list[dict[str, Any]]) -> None:
        """Queue the next job when it is due, unless as many as the pool already wait."""
        now = time.monotonic()
        if now < self.next_job:
            return
        self.next_job = now + JOB_EVERY
        if sum(job["status"] == "queued" for job in jobs) >= len(self.kinds):
            return
        self.jobs_made += 1
        self.sandbox.enqueue_job(
            list(LABELS),
            duration=round(self.random.uniform(*JOB_SECONDS), 1),
            scope=f"repo:{REPO}",
            name=f"demo job {self.jobs_made}",
        )

    def stop_manager(self) -> int | None:
        """SIGTERM (running jobs finish), SIGINT on a second Ctrl-C, SIGKILL on a third
        or past the bound; the manager's exit code, None when it had to be killed."""
        assert self.manager is not None
        if self.manager.poll() is not None:
            return self.manager.returncode
        pid, seen, hurried = self.manager.pid, self.signals.count, False
        self.view.say(f"demo: stopping the manager (SIGTERM to pid {pid}); running jobs finish")
        self.manager.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT + STOP_GRACE
        while self.manager.poll() is None:
            # One step further per look: a hasty double Ctrl-C only stops now, no kill.
            pressed = self.signals.count > seen
            seen = self.signals.count
            if pressed and not hurried:
                hurried = True
                self.view.say("demo: stopping now (SIGINT to the manager); jobs are cut short")
                self.manager.send_signal(signal.SIGINT)
            elif (pressed and hurried) or time.monotonic() >= deadline:
                self.view.say(f"demo: killing the manager (pid {pid}) and its runners")
                self.kill_manager()
                log.warning("killed: manager (pid %d)", pid)
                return None
            self.view.show(self.snapshot(note=HURRIED_NOTE if hurried else STOPPING_NOTE))
            time.sleep(TICK)
        log.info("exited: manager (pid %d, code %s)", pid, self.manager.returncode)
        return self.manager.returncode

    def report(self, code: int | None, early: bool) -> None:
        """The summary line (tests parse it), and the manager's log when it failed."""
        jobs = count_jobs(self.sandbox.jobs())
        self.count_calls(now=True)
        unfinished = jobs["queued"] + jobs["running"]
        ending = "killed" if code is None else str(code)
        self.view.say(
            f"demo: {jobs['succeeded']} jobs succeeded, {jobs['failed']} failed, "
            f"{jobs['lost']} lost, {jobs['cancelled']} cancelled, {unfinished} not run; "
            f"{self.api_calls} API calls; manager exit code {ending}"
        )
        if early or code != 0:
            self.view.say(f"demo: the manager ended ({ending}); the end of its manager.log:")
            for line in self.log_tail(20):
                self.view.say("  " + line)

    def clean_up(self) -> None:
        """Leave nothing behind: no process in the folder, no double, no folder."""
        if self.manager is not None and self.manager.poll() is None:
            self.kill_manager()
        leftovers = self.sweep()
        if leftovers:
            self.view.say(f"demo: killed {leftovers} leftover process(es) in {self.folder}")
        self.sandbox.stop()
        if self.log_handler is not None:
            package_logger = logging.getLogger("runnerctl")
            package_logger.removeHandler(self.log_handler)
            package_logger.setLevel(self.log_level)
            self.log_handler.close()
        if self.keep:
            self.view.say(f"demo: kept {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

    # Helpers ----------------------------------------------------------------------

    def snapshot(self, jobs: list[dict[str, Any]] | None = None, note: str = "") -> Snapshot:
        try:
            document = read_status(self.folder / "state")
        except (OSError, ValueError):
            document = {}  # not written yet, or being replaced
        self.count_calls()
        return Snapshot(
            elapsed=time.monotonic() - self.started,
            phase=str(document.get("root", {}).get("phase", "starting")),
            slots=self.remember(slot_rows(document, self.kinds, self.rows)),
            jobs=count_jobs(self.sandbox.jobs() if jobs is None else jobs),
            api_calls=self.api_calls,
            note=note,
        )

    def remember(self, rows: tuple[SlotRow, ...]) -> tuple[SlotRow, ...]:
        self.rows = {row.name: row for row in rows}
        return rows

    def count_calls(self, now: bool = False) -> None:
        """Add the manager's REST calls logged since the last count (once a second)."""
        moment = time.monotonic()
        if not now and moment < self.next_call_count:
            return
        self.next_call_count = moment + 1.0
        calls = self.sandbox.calls()
        self.api_calls += sum(is_api_call(call) for call in calls[self.calls_seen :])
        self.calls_seen = len(calls)

    def kill_manager(self) -> None:
        assert self.manager is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.manager.pid, signal.SIGKILL)
        self.manager.wait()

    def sweep(self) -> int:
        """SIGKILL whatever still runs in the folder (runners live in their own
        sessions, so the manager's process group does not reach them); how many."""
        killed: set[int] = set()
        for _ in range(5):
            found = [pid for pid in procfs.working_in(self.folder) if pid not in killed]
            if not found:
                break
            for pid in found:
                log.warning("leftover: pid %d in %s; killing it", pid, self.folder)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.add(pid)
            time.sleep(0.1)
        return len(killed)

    def log_tail(self, count: int) -> list[str]:
        try:
            text = (self.folder / "manager.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return text.splitlines()[-count:]
