"""The end of the soak: let the pool settle, stop it twice, and check what is left.

After the chaos the pool goes back to its full shape and the job feed stops. Then:

1. SIGTERM, as ``systemctl stop`` sends it. The root must exit 0 within its
   stop_timeout, and leave exactly one running listener per daemonized slot (those
   are left for the next manager on purpose) and no other process.
2. A new root (the next ``systemctl start``) must adopt those listeners; then SIGINT
   to the root alone stops the service together with every runner. Nothing may be
   left running in the test's folder, and the only registration left on GitHub may
   be the persistent slot's own (the one its ``.runner`` file names): ephemeral
   runners either took their job (GitHub removes them) or are deregistered by the
   stop, and every other registration of a slot name is a ghost.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.chaos.ledger import Ledger
from tests.chaos.pool import FULL, REPO, STOP_TIMEOUT, SoakManager
from tests.processes import processes_under

SETTLE = 180.0
FINISHED = ("succeeded", "lost", "cancelled", "failed")

JOBS_FINISH = "every job ends"
JOBS_NOT_LOST = "no job lost or cancelled by runnerctl"
RECOVERS = "pool recovers after the chaos"
TERM_EXITS = "SIGTERM: root exits 0 in time"
TERM_LEAVES = "SIGTERM: only daemonized listeners left"
ADOPTS = "new root adopts daemonized listeners"
INT_EXITS = "SIGINT: root exits 0 in time"
NO_ORPHANS = "no orphan process after stop"
NO_GHOSTS = "no ghost registration after stop"


def until(condition: Callable[[], Any], timeout: float) -> bool:
    """Whether ``condition`` held within ``timeout`` seconds (polled every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def settle(manager: SoakManager, ledger: Ledger) -> None:
    """Wait for every job to end and for the full pool to be idle and online."""

    def unfinished() -> list[dict[str, Any]]:
        return [job for job in manager.sandbox.jobs() if job["status"] not in FINISHED]

    ledger.checked(JOBS_FINISH)
    if not until(lambda: not unfinished(), SETTLE):
        ledger.violated(JOBS_FINISH, f"{SETTLE:g}s after the chaos, not ended: {unfinished()}")
    ledger.checked(RECOVERS)
    if not until(lambda: full_and_idle(manager), SETTLE):
        ledger.violated(
            RECOVERS,
            f"{SETTLE:g}s after the chaos: states {manager.states()}, "
            f"online {sorted(manager.online())}",
        )


def full_and_idle(manager: SoakManager) -> bool:
    return manager.all_in("idle", count=FULL.size) and set(manager.online()) >= FULL.names


def judge_jobs(jobs: list[dict[str, Any]], attributed: dict[int, str], ledger: Ledger) -> int:
    """Every job that did not succeed must be one the chaos ended; how many were."""
    by_chaos = 0
    for job in jobs:
        ledger.checked(JOBS_NOT_LOST)
        if job["status"] not in ("lost", "cancelled", "failed"):
            continue
        if job["id"] in attributed:
            by_chaos += 1
            continue
        ledger.violated(
            JOBS_NOT_LOST,
            f"job {job['id']} {job['status']} on {job['runner']} (result {job['result']},"
            f" started {job['started']}), not caused by the chaos",
        )
    return by_chaos


def stop_with_sigterm(manager: SoakManager, ledger: Ledger) -> dict[str, list[int]]:
    """SIGTERM; the daemonized listeners it left, by slot."""
    before = manager.listeners()
    manager.signal(signal.SIGTERM)
    code = manager.reap(STOP_TIMEOUT + 60)
    ledger.checked(TERM_EXITS)
    if code != 0:
        ledger.violated(TERM_EXITS, f"exit code {code} (None: still running)")
        return {}
    kept = {name: before.get(name, []) for name in FULL.daemonized}

    def only_daemonized() -> bool:
        return set(processes_under(manager.folder)) == {p for pids in kept.values() for p in pids}

    ledger.checked(TERM_LEAVES)
    if not until(only_daemonized, 10) or any(len(pids) != 1 for pids in kept.values()):
        ledger.violated(
            TERM_LEAVES,
            f"left {describe(processes_under(manager.folder))}; daemonized before: {kept}",
        )
    return kept


def restart_and_stop_with_sigint(
    manager: SoakManager, kept: dict[str, list[int]], ledger: Ledger
) -> None:
    manager.start()
    ledger.checked(ADOPTS)
    if not until(lambda: full_and_idle(manager), SETTLE):
        ledger.violated(ADOPTS, f"restarted root: states {manager.states()}")
    else:
        runners = {name: [slot["runner_pid"]] for name, slot in manager.slots().items()}
        changed = {n: (pids, runners.get(n)) for n, pids in kept.items() if runners.get(n) != pids}
        if changed:
            ledger.violated(ADOPTS, f"not adopted (before, after): {changed}")
    manager.signal(signal.SIGINT)
    code = manager.reap(STOP_TIMEOUT + 60)
    ledger.checked(INT_EXITS)
    if code != 0:
        ledger.violated(INT_EXITS, f"exit code {code} (None: still running)")
    ledger.checked(NO_ORPHANS)
    if not until(lambda: not processes_under(manager.folder), 10):
        ledger.violated(NO_ORPHANS, f"left running: {describe(processes_under(manager.folder))}")


def check_registrations(manager: SoakManager, ledger: Ledger) -> None:
    """Left on GitHub: at most the persistent slot's own registration."""
    mine = [r for r in manager.sandbox.runners() if r["scope"] == f"repo:{REPO}"]
    ledger.checked(NO_GHOSTS, len(mine) or 1)
    own = {name: registered_id(manager.runners / name) for name in FULL.persistent}
    for runner in mine:
        if own.get(runner["name"]) != runner["id"]:
            ledger.violated(
                NO_GHOSTS,
                f"{runner['name']} (id {runner['id']}, {runner['status']}, busy "
                f"{runner['busy']}); the slots' own registrations: {own}",
            )


def registered_id(folder: Path) -> int | None:
    """The runner id in a slot's ``.runner`` file (UTF-8 with a BOM), if any."""
    try:
        return int(json.loads((folder / ".runner").read_text(encoding="utf-8-sig"))["agentId"])
    except (OSError, ValueError, KeyError):
        return None


def describe(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found.append(f"{pid} {title.strip()[:120]}")
    return found
