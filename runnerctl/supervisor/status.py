"""``status.json``: what the root publishes about its slots, and how it is shown.

The root rewrites the file after every change it sees (write to a temporary file in
the same folder, then ``os.replace``), so a reader never sees half a document.
``runnerctl-manager status`` only reads it: it works without touching the root.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
FORMAT = 1


def status_path(state_dir: Path) -> Path:
    """Where the root of a pool with this ``state_dir`` publishes its status."""
    return Path(state_dir) / STATUS_FILE


def write_status(state_dir: Path, document: dict[str, Any]) -> None:
    """Replace ``status.json`` atomically with ``document``."""
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"format": FORMAT, **document}, indent=1, sort_keys=True)
    handle, temporary = tempfile.mkstemp(prefix=".status.", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(body + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / STATUS_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_status(state_dir: Path) -> dict[str, Any]:
    """The last published document; OSError or ValueError when there is none."""
    with status_path(state_dir).open(encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict):
        raise ValueError("status.json does not hold an object")
    return document


def root_alive(document: dict[str, Any]) -> bool:
    """Whether the pid that wrote the document still runs (it may have died hard)."""
    pid = document.get("root", {}).get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def duration(seconds: float | None) -> str:
    """``3m12s``-style, short and greppable; ``-`` for nothing."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


COLUMNS = ("SLOT", "STATE", "PID", "UPTIME", "JOBS", "RESTARTS", "LAST EXIT", "VERSION")


def format_table(document: dict[str, Any], now: float | None = None) -> str:
    """A header about the root, then one row per slot."""
    now = time.time() if now is None else now
    root = document.get("root", {})
    lines = [
        f"root: pid {root.get('pid', '-')}"
        f"{'' if root_alive(document) else ' (not running)'}, {root.get('phase', '-')}, "
        f"config {root.get('config', '-')}",
        f"last reconcile: {_ago(root.get('last_reconcile'), now)}"
        f"{', config error: ' + root['config_error'] if root.get('config_error') else ''}",
        "",
    ]
    rows: list[tuple[str, ...]] = [COLUMNS]
    for slot in document.get("slots", []):
        rows.append(_row(slot, now))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for slot in document.get("slots", []):
        if slot.get("notice"):
            lines.append(f"note: {slot['name']}: {slot['notice']}")
    return "\n".join(lines)


def _row(slot: dict[str, Any], now: float) -> tuple[str, ...]:
    state = str(slot.get("state", "-"))
    if slot.get("retry_at"):
        state += f" (retry in {duration(slot['retry_at'] - now)})"
    started = slot.get("runner_started")
    last_exit = slot.get("last_exit")
    return (
        str(slot.get("name", "-")),
        state,
        str(slot.get("runner_pid") or "-"),
        duration(now - started) if started else "-",
        str(slot.get("jobs_done", 0)),
        str(slot.get("restarts", 0)),
        "-" if last_exit is None else str(last_exit),
        str(slot.get("runner_version") or "-"),
    )


def _ago(moment: float | None, now: float) -> str:
    return "never" if not moment else f"{duration(now - moment)} ago"
