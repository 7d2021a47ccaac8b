"""The chaos soak: jobs flow through a real pool while processes die, GitHub fails
and the config flips; invariants are checked all along and at the end.

``pytest tests/chaos`` runs 60 seconds of chaos; ``--chaos-seconds 600`` runs longer,
``--chaos-seed N`` replays a run's random choices (the seed is printed). The summary
table (faults injected, checks, violations) is printed at the end; any violation
fails the test. docs/performance.md, "Chaos soak", explains each invariant.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from runnerctl.sandbox import Sandbox
from tests.chaos import finale
from tests.chaos.chaos import ChaosDriver
from tests.chaos.ledger import Ledger
from tests.chaos.monitor import ConfigHistory, Monitor
from tests.chaos.pool import FULL, SoakManager

pytestmark = pytest.mark.slow


def test_pool_survives_chaos(
    sandbox: Sandbox, tmp_path: Path, chaos_seconds: float, chaos_seed: int | None
) -> None:
    seed = chaos_seed if chaos_seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos soak: seed {seed}, {chaos_seconds:g}s (replay: --chaos-seed {seed})")
    sandbox.configure(poll_seconds=0.2, offline_after=3)
    manager = SoakManager(tmp_path, sandbox)
    ledger, history = Ledger(), ConfigHistory()
    monitor = Monitor(manager, history, ledger, seed)
    driver = ChaosDriver(manager, history, ledger, seed + 1)
    try:
        manager.apply(FULL)
        history.begin(FULL, time.monotonic())
        manager.start()
        assert finale.until(lambda: finale.full_and_idle(manager), finale.SETTLE), (
            f"the pool never came up: {manager.states()}"
        )
        monitor.start()
        monitor.feeding.set()
        driver.run(chaos_seconds)
        driver.restart_if_gone()
        assert finale.until(manager.ready, finale.SETTLE), "the root never became ready"
        manager.apply(FULL)
        history.begin(FULL, time.monotonic())
        manager.signal(signal.SIGHUP)
        monitor.feeding.clear()
        finale.settle(manager, ledger)
        by_chaos = finale.judge_jobs(sandbox.jobs(), driver.attributed, ledger)
        kept = finale.stop_with_sigterm(manager, ledger)
        if kept:
            finale.restart_and_stop_with_sigint(manager, kept, ledger)
        finale.check_registrations(manager, ledger)
    finally:
        monitor.stop()
        manager.kill_everything()
    jobs = sandbox.jobs()
    report = ledger.table(
        f"chaos soak, seed {seed}, {chaos_seconds:g}s: {len(jobs)} jobs, "
        f"{sum(j['status'] == 'succeeded' for j in jobs)} succeeded, {by_chaos} ended by the "
        f"chaos; root started {manager.starts} times; at most {monitor.most_listeners} "
        "live listeners"
    )
    print(report)
    assert monitor.error is None, f"the monitor failed: {monitor.error!r}"
    assert ledger.total_violations() == 0, report
