"""Where the root's view of its pool goes: status.json, systemd, metrics and ``ps``.

The root calls ``Publisher.publish`` after every wake-up of its loop; each outlet is
cheap and local (a small file replaced atomically, a datagram, counters in memory,
the process title), so publishing never delays supervision.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runnerctl.metrics import Metrics
from runnerctl.supervisor.children import set_title
from runnerctl.supervisor.records import WorkerRecord, wall_offset
from runnerctl.supervisor.states import SlotState
from runnerctl.supervisor.status import write_status
from runnerctl.systemd import Notifier

log = logging.getLogger(__name__)

EARLY = (SlotState.STARTING, SlotState.INSTALLING, SlotState.REGISTERING)


class Publisher:
    """Publishes the pool; remembers whether systemd heard READY=1 yet."""

    def __init__(self, config_path: Path, notifier: Notifier, metrics: Metrics | None) -> None:
        self.config_path = config_path
        self.notifier = notifier
        self.metrics = metrics
        self.ready_sent = False
        self.write_error = ""
        self._observed: set[str] = set()

    def publish(
        self,
        state_dir: Path,
        root: dict[str, Any],
        records: Sequence[WorkerRecord],
        running: bool,
    ) -> None:
        """Write status.json, tell systemd and the metrics, and retitle the root."""
        set_title(f"root {self.config_path} ({len(records)} slots)")
        offset = wall_offset()
        document = {
            "root": {"pid": os.getpid(), "config": str(self.config_path), **root},
            "slots": [record.describe(offset) for record in records],
        }
        try:
            write_status(state_dir, document)
            self.write_error = ""
        except OSError as error:
            # Supervision goes on without status.json; say so once per distinct failure.
            if str(error) != self.write_error:
                self.write_error = str(error)
                log.error("status not written: %s/status.json (%s)", state_dir, error.strerror)
        self.observe(records)
        if not self.ready_sent and running and all(r.state not in EARLY for r in records):
            self.ready_sent = True
            log.info("ready: %d slots started", len(records))
            self.notifier.ready(summary(records))
        else:
            self.notifier.status(summary(records))

    def observe(self, records: Sequence[WorkerRecord]) -> None:
        """Feed the metrics each slot as it is now; forget slots that left."""
        if self.metrics is None:
            return
        names = {record.name for record in records}
        for gone in self._observed - names:
            self.metrics.forget_slot(gone)
        self._observed = names
        for record in records:
            report = record.report
            self.metrics.observe_slot(
                record.name,
                record.state,
                report.busy if record.state.running else None,
                report.jobs_done,
                report.restarts + record.restarts,
            )


def summary(records: Sequence[WorkerRecord]) -> str:
    """``4 slots: 1 busy, 3 idle``, for systemd's status line."""
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.state)] = counts.get(str(record.state), 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"{len(records)} slots: {parts}" if parts else "no slots"
