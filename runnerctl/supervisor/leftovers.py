"""Runner folders whose slot left the configuration while nobody was watching.

A slot removed from the config while the root runs is drained and deregistered by its
own worker. One removed while no root ran (the service was stopped, or the root was
killed and the file changed before systemd restarted it) leaves a folder whose
daemonized runner may still be online and taking jobs, unsupervised. Both the root,
when it starts, and ``runnerctl-manager once`` look for such folders under the
config's ``base_dir``s and retire them.

To deregister a runner the right way we need its slot's scope, which the config no
longer holds. So every worker records its slot's settings in the runner folder when
it launches a runner; a folder without that record (made by an older runnerctl) is
taken to share the scope of a slot of the same ``base_dir``, the best guess left.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from runnerctl.config import Slot
from runnerctl.runner import pidfile

log = logging.getLogger(__name__)

#: The slot's settings, as its worker last launched a runner with them.
SLOT_FILE = ".runnerctl-slot.json"


def remember(slot: Slot) -> None:
    """Record ``slot``'s settings in its runner folder (atomically, owner-only)."""
    folder = Path(slot.directory)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{SLOT_FILE}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(slot.model_dump(mode="json"), handle, sort_keys=True)
    os.replace(temporary, folder / SLOT_FILE)


def removed_slots(slots: Sequence[Slot]) -> list[Slot]:
    """Slots of runner folders beside ``slots`` that are no longer in the config and
    still hold a registration or a live listener."""
    names = {slot.name for slot in slots}
    templates: dict[Path, Slot] = {}
    for slot in slots:
        templates.setdefault(Path(slot.base_dir), slot)
    found = []
    for base, template in templates.items():
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if folder.name in names or not folder.is_dir() or not in_use(folder):
                continue
            found.append(recorded(folder) or template.model_copy(update={"name": folder.name}))
    return found


def in_use(folder: Path) -> bool:
    """Whether the folder holds a registration or a listener that is still alive."""
    if (folder / ".runner").exists():
        return True
    entry = pidfile.read(folder / pidfile.PIDFILE_NAME)
    return entry is not None and entry.matches()


def recorded(folder: Path) -> Slot | None:
    """The slot settings its worker recorded in ``folder``; None when absent or unusable."""
    try:
        slot = Slot.model_validate(json.loads((folder / SLOT_FILE).read_text("utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as error:
        log.warning("unreadable slot record: %s (%s)", folder / SLOT_FILE, error)
        return None
    if Path(slot.directory) != folder:
        return None  # the folder was moved or copied: its record describes another
    return slot
