"""``self-runner-ctl``: one runner by hand, with the same machinery the manager uses.

``register`` installs, registers and starts one runner and either stays with it in the
foreground (Ctrl-C stops it gracefully: the listener's own shutdown) or returns once
it is online, leaving it running in its own session (``--daemonize``). ``remove``
deregisters it, after its job if it is running one. ``status`` reads runner folders.

Settings come through ``runnerctl.config``, so the runner is checked exactly as a
configured one would be and the credentials come from the same variables as the
manager's (``GITHUB_TOKEN``, ``GITHUB_APP_*``, ``GHWFAX__...`` overrides). A config file
(``--config``, ``$RUNNERCTL_CONFIG`` or the default path, when it exists) contributes its
``github``, ``manager`` and ``defaults`` sections; its runners are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import argh
import yaml

from runnerctl import cli
from runnerctl.config import Config, Slot, config_path, load_config
from runnerctl.config.loader import read_document
from runnerctl.config.models import RunnerSettings
from runnerctl.distribution import RunnerCache
from runnerctl.errors import ConfigError, RunnerError
from runnerctl.github import GitHub
from runnerctl.runner import Busy, Exit, Idle, Online, Runner, RunnerProcess
from runnerctl.runner.describe import RunnerState, describe, runner_folders
from runnerctl.runner.logfile import LOG_NAME
from runnerctl.runner.register import local_registration

CONFIG_HELP = "config file for github/manager/defaults (default: $RUNNERCTL_CONFIG, if it exists)"
#: How long ``--daemonize`` waits for "Listening for Jobs".
ONLINE_TIMEOUT = 120.0
#: Lines of runner.log shown when the runner ended badly.
LOG_TAIL = 8
#: Budget for Ctrl-C: SIGINT (the job is cancelled), then SIGTERM, then SIGKILL.
STOP_TIMEOUT = 60.0


# -- commands -------------------------------------------------------------------------


@argh.arg("--scope", choices=("repo", "org", "enterprise"), help="where the runner registers")
@argh.arg("--repo", help="owner/repo (with --scope repo)")
@argh.arg("--org", help="organization (with --scope org)")
@argh.arg("--enterprise", help="enterprise slug (with --scope enterprise)")
@argh.arg("--name", help="runner name; also its folder under --base-dir")
@argh.arg("--labels", help="extra labels, comma-separated")
@argh.arg("--version", help="runner version: latest or X.Y.Z")
@argh.arg("--registration", choices=("token", "jit"), help="default: jit when ephemeral")
@argh.arg("--ephemeral", help="take one job, then leave")
@argh.arg("--runner-group", help="runner group (org and enterprise runners)")
@argh.arg("--workdir", help="work folder, relative to the runner folder")
@argh.arg(
    "--base-dir",
    help="where runner folders live (default: the config's, else /opt/runnerctl/runners)",
)
@argh.arg("--foreground", help="stay with the runner until it exits (the default)")
@argh.arg("--daemonize", help="return once the runner is online; it keeps running")
@argh.arg("--config", help=CONFIG_HELP)
def register(
    *,
    scope: str | None = None,
    repo: str | None = None,
    org: str | None = None,
    enterprise: str | None = None,
    name: str | None = None,
    labels: str | None = None,
    ephemeral: bool = False,
    version: str | None = None,
    registration: str | None = None,
    runner_group: str | None = None,
    workdir: str | None = None,
    foreground: bool = False,
    daemonize: bool = False,
    base_dir: str | None = None,
    config: str | None = None,
) -> None:
    """Install, register and start one runner."""
    if foreground and daemonize:
        raise RunnerError("choose one of --foreground and --daemonize")
    item = runner_item(scope, repo, org, enterprise, name)
    item.update(_given(labels=labels, version=version, registration=registration))
    item.update(_given(runner_group=runner_group, workdir=workdir, base_dir=base_dir))
    item["ephemeral"] = ephemeral  # a flag: persistent unless asked, whatever the file says
    loaded, slot = load_slot(item, config)
    runner = make_runner(loaded, slot)
    adopted = runner.adopt()
    if adopted is not None:
        say(f"running already: {slot.name} (pid {adopted.pid})")
        if daemonize:
            adopted.close()
            return
        _exit_with(follow(adopted))
        return
    say(f"installed: {slot.name} runner {runner.install()} in {runner.directory}")
    process = runner.start(runner.register())
    say(f"started: {slot.name} (pid {process.pid}, {slot.registration} registration)")
    _exit_with(wait_online(process) if daemonize else follow(process))


@argh.arg("--name", help="runner name (its folder under --base-dir)")
@argh.arg("--scope", choices=("repo", "org", "enterprise"), help="default: from its .runner")
@argh.arg("--base-dir", help="where runner folders live")
@argh.arg("--timeout", help="seconds to wait for a running job to end")
@argh.arg("--config", help=CONFIG_HELP)
def remove(
    *,
    name: str | None = None,
    scope: str | None = None,
    repo: str | None = None,
    org: str | None = None,
    enterprise: str | None = None,
    base_dir: str | None = None,
    timeout: float = 3600.0,
    config: str | None = None,
) -> None:
    """Stop the runner after its job, deregister it and clear its registration files."""
    if not name:
        raise RunnerError("name the runner: --name NAME")
    folder = Path(base_dir or default_base_dir(config)) / name
    if not any((scope, repo, org, enterprise)):
        scope, repo, org, enterprise = scope_from_folder(folder)
    item = runner_item(scope, repo, org, enterprise, name)
    item["base_dir"] = str(folder.parent)
    loaded, slot = load_slot(item, config)
    runner = make_runner(loaded, slot)
    process = runner.adopt()
    if process is not None:
        with process:
            if process.busy or process.worker() is not None:
                say(f"waiting: {name} runs job {process.job or 'unknown'}; removing after it")
            if process.stop(now=False, timeout=timeout) is None:
                raise RunnerError(f"{name}: the job still runs after {timeout:.0f}s; try later")
            say(f"stopped: {name} (pid {process.pid})")
    runner.remove()
    say(f"removed: {name}")


@argh.arg("--name", help="only this runner")
@argh.arg("--json", help="print JSON")
@argh.arg("--base-dir", help="where runner folders live")
@argh.arg("--config", help=CONFIG_HELP)
def status(
    *,
    name: str | None = None,
    base_dir: str | None = None,
    json: bool = False,
    config: str | None = None,
) -> None:
    """Show the runners under --base-dir: version, registration, pid, busy or idle."""
    base = Path(base_dir or default_base_dir(config))
    folders = [base / name] if name else runner_folders(base)
    if name and not folders[0].is_dir():
        raise RunnerError(f"{folders[0]}: no such runner folder")
    states = [describe(folder) for folder in folders]
    if json:
        print(_json_dumps([state.as_dict() for state in states]))
    else:
        print(format_states(states))


COMMANDS: list[Callable[..., Any]] = [register, remove, status]


# -- running in the foreground or detached --------------------------------------------


def follow(process: RunnerProcess) -> int:
    """Report the runner's events until it exits; the first Ctrl-C stops it gracefully."""
    with process, _signals_as_fd() as wakeup:
        stopping = False
        while process.exit() is None:
            watched = [process.fileno(), process.events_fileno(), wakeup]
            ready, _, _ = select.select(watched, [], [])
            report(process)
            if wakeup in ready:
                os.read(wakeup, 64)
                if not stopping:
                    stopping = True
                    say(f"stopping: {process.name} (pid {process.pid}); the job is cancelled")
                    process.stop(now=True, timeout=STOP_TIMEOUT)
        report(process)
        return finish(process, process.exit())


def wait_online(process: RunnerProcess, timeout: float = ONLINE_TIMEOUT) -> int:
    """Return once the listener says it listens for jobs; it keeps running after us."""
    deadline = time.monotonic() + timeout
    with process:
        while not process.online:
            if process.exit() is not None:
                return finish(process, process.exit())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnerError(
                    f"{process.name}: not online after {timeout:.0f}s; see "
                    f"{process.directory}/runner.log (pid {process.pid} keeps running)"
                )
            select.select([process.fileno(), process.events_fileno()], [], [], remaining)
        say(f"online: {process.name} (pid {process.pid}, pid file {process.directory}/runner.pid)")
        return 0


def report(process: RunnerProcess) -> None:
    for event in process.read_events():
        if isinstance(event, Online):
            say(f"online: {process.name} listens for jobs")
        elif isinstance(event, Busy):
            say(f"busy: {process.name} runs {event.job}")
        elif isinstance(event, Idle):
            say(f"idle: {process.name} finished {event.job} ({event.result})")


def finish(process: RunnerProcess, ended: Exit | None) -> int:
    """Say how the runner ended; 0 when that was a normal end."""
    say(f"exited: {process.name} (pid {process.pid}, {ended})")
    if ended is None or ended.action in ("done", "unknown"):
        return 0
    log = process.directory / LOG_NAME
    with contextlib.suppress(OSError):
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL:]
        say(f"last lines of {log}:")
        for line in tail:
            say(f"  {line}")
    return 1


@contextmanager
def _signals_as_fd() -> Iterator[int]:
    """SIGINT and SIGTERM become bytes on a pipe the loop selects on."""
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_fd = signal.set_wakeup_fd(write_end)
    handlers = {
        number: signal.signal(number, _ignore) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield read_end
    finally:
        signal.set_wakeup_fd(previous_fd)
        for number, handler in handlers.items():
            signal.signal(number, handler)
        os.close(read_end)
        os.close(write_end)


def _ignore(signum: int, frame: object) -> None:
    """The wakeup fd carries the signal; the handler only keeps Python from raising."""


# -- settings -------------------------------------------------------------------------


def runner_item(
    scope: str | None,
    repo: str | None,
    org: str | None,
    enterprise: str | None,
    name: str | None,
) -> dict[str, Any]:
    """A ``runners`` item for the config loader, which checks every value."""
    if not name:
        raise RunnerError("name the runner: --name NAME")
    item: dict[str, Any] = {"name": name}
    item.update(_given(scope=scope, repo=repo, org=org, enterprise=enterprise))
    if not any(key in item for key in ("repo", "org", "enterprise")):
        raise RunnerError("say where it registers: --repo owner/repo, --org ORG or --enterprise E")
    return item


def load_slot(item: dict[str, Any], config: str | None) -> tuple[Config, Slot]:
    """Load the config file's sections (if any) with ``item`` as the only runner."""
    document = _base_document(config)
    origin = str(config_path(config, os.environ)) if document else "the environment"
    document["runners"] = [item]
    defaults = document.get("defaults")
    if isinstance(defaults, dict):
        # This one runner is foreground/daemonize by flag, not by the file's default.
        defaults.pop("daemonize", None)
    with tempfile.TemporaryDirectory(prefix="self-runner-ctl-") as folder:
        path = Path(folder) / "self-runner-ctl.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        try:
            loaded = load_config(path)
        except ConfigError as error:
            problems = [_as_options(line, path, origin) for line in error.problems]
            raise ConfigError(problems) from None
    return loaded, loaded.slots()[0]


def _as_options(problem: str, path: Path, origin: str) -> str:
    """Word a problem of the generated item as the option that caused it."""
    item = f"{path}: runners[0]."
    if problem.startswith(item):
        key, _, message = problem[len(item) :].partition(": ")
        return f"--{key.replace('_', '-')}: {message}"
    return problem.replace(str(path), origin)


def make_runner(config: Config, slot: Slot) -> Runner:
    manager = config.manager
    github = GitHub.from_settings(config.github, state_dir=manager.state_dir)
    cache = RunnerCache(manager.cache_dir, github=github, keep=manager.keep_versions)
    return Runner(slot, github=github, cache=cache, server_url=config.github.server_url)


def default_base_dir(config: str | None) -> str:
    """``defaults.base_dir`` of the config file, else the built-in default."""
    defaults = _base_document(config).get("defaults")
    if isinstance(defaults, dict) and defaults.get("base_dir"):
        return str(defaults["base_dir"])
    return str(RunnerSettings.model_fields["base_dir"].default)


def scope_from_folder(folder: Path) -> tuple[str, str | None, str | None, str | None]:
    """The scope a runner registered at, from its ``.runner`` ``gitHubUrl``."""
    registration = local_registration(folder) or {}
    parts = [part for part in urlsplit(str(registration.get("gitHubUrl", ""))).path.split("/")]
    parts = [part for part in parts if part]
    if len(parts) == 2 and parts[0] == "enterprises":
        return "enterprise", None, None, parts[1]
    if len(parts) == 2:
        return "repo", "/".join(parts), None, None
    if len(parts) == 1:
        return "org", None, parts[0], None
    raise RunnerError(
        f"{folder}: no local registration to tell the scope; add --repo, --org or --enterprise"
    )


def _base_document(config: str | None) -> dict[str, Any]:
    path = config_path(config, os.environ)
    if config is None and not path.exists():
        return {}
    document = read_document(path)
    return {key: value for key, value in document.items() if key != "runners"}


def _exit_with(code: int) -> None:
    """End the command with ``code`` (the runner's outcome) when it is not 0."""
    if code:
        raise SystemExit(code)


def _given(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


# -- output ---------------------------------------------------------------------------


def format_states(states: Sequence[RunnerState]) -> str:
    if not states:
        return "no runners"
    rows = [("NAME", "STATE", "PID", "RUNNER ID", "VERSION", "URL")]
    for state in states:
        rows.append(
            (
                state.name,
                state.state,
                str(state.pid or "-"),
                str(state.runner_id or "-"),
                state.version or "-",
                state.url or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _json_dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def say(text: str) -> None:
    print(text, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    return cli.build_parser(
        "self-runner-ctl",
        "Register, run and remove one self-hosted GitHub Actions runner by hand.",
        COMMANDS,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``self-runner-ctl``: errors as one line on stderr, never a traceback."""
    cli.dispatch(build_parser(), argv)


if __name__ == "__main__":
    main()
