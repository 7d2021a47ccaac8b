"""The supervisor's commands: ``runnerctl-manager run``, ``once`` and ``status``.

Each is a small function that ``runnerctl.manager`` lists among its commands; errors
are ``RunnerctlError``s that the manager prints as one line.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import cast

import argh

from runnerctl.config import Config, load_config
from runnerctl.errors import ConfigError, RunnerctlError
from runnerctl.logs import log_level, setup_logging
from runnerctl.supervisor.status import format_table, read_status

CONFIG_HELP = "configuration file (default: $RUNNERCTL_CONFIG, else /etc/runnerctl/runnerctl.yaml)"


@argh.arg("--config", help=CONFIG_HELP)
@argh.arg("--interval", type=float, help="seconds between reconcile passes (default: config)")
@argh.arg("--log-level", type=log_level, help="debug, info, warning or error")
def run(
    *, config: str | None = None, interval: float | None = None, log_level: str = "info"
) -> None:
    """Supervise the pool: one worker per runner slot, until SIGTERM or SIGINT."""
    from runnerctl.metrics import Metrics, MetricsEndpoint
    from runnerctl.supervisor.janitor import run_janitor
    from runnerctl.supervisor.leftovers import removed_slots
    from runnerctl.supervisor.root import Root
    from runnerctl.supervisor.states import SlotState
    from runnerctl.supervisor.worker import run_worker

    setup_logging(log_level)
    if interval is not None and interval <= 0:
        raise ConfigError([f"--interval: {interval} is not positive (e.g. --interval 10)"])
    loaded = load_config(config)
    metrics = Metrics(states=list(SlotState))
    address = loaded.manager.metrics_address
    endpoint = MetricsEndpoint.open(address, metrics) if address else None
    root = Root(
        loaded.source,
        load=load_config,
        worker_main=run_worker,
        janitor_main=run_janitor,
        find_leftovers=lambda pool: removed_slots(cast(Config, pool).slots()),
        interval=interval,
        extras=(endpoint,) if endpoint is not None else (),
        metrics=metrics,
    )
    status = root.run()
    if endpoint is not None:
        endpoint.close()
    sys.exit(status)


@argh.arg("--config", help=CONFIG_HELP)
@argh.arg("--log-level", type=log_level, help="debug, info, warning or error")
def once(*, config: str | None = None, log_level: str = "warning") -> None:
    """One reconcile pass: start missing runners detached, remove retired ones, report."""
    from runnerctl.supervisor.once import reconcile_once

    setup_logging(log_level)
    summary = reconcile_once(load_config(config))
    print(summary.render())
    if not summary.all_running:
        sys.exit(1)


@argh.arg("--config", help=CONFIG_HELP)
@argh.arg("--state-dir", help="read status.json here instead of the config's manager.state_dir")
@argh.arg("--json", help="print the raw status document")
def status(*, config: str | None = None, state_dir: str | None = None, json: bool = False) -> None:
    """Show what the running root publishes: one row per slot."""
    folder = Path(state_dir) if state_dir else Path(load_config(config).manager.state_dir)
    try:
        document = read_status(folder)
    except FileNotFoundError:
        raise RunnerctlError(
            f"{folder}/status.json: no status yet; is `runnerctl-manager run` running "
            "with this config?"
        ) from None
    except (OSError, ValueError) as error:
        raise RunnerctlError(f"{folder}/status.json: unreadable ({error})") from None
    if json:
        print(jsonlib.dumps(document, indent=2, sort_keys=True))
    else:
        print(format_table(document))
