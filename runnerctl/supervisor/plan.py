"""Reconcile planning: what the root should do to make its workers match the config.

Pure functions from "what is desired" and "what is running" to a list of actions,
so that every case is tested without a process in sight. The root carries the
actions out (spawn, retire) in its own verb-named steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Retirement = Literal["remove", "replace"]


@dataclass(frozen=True)
class Current:
    """What the root knows of one slot that has a worker (alive or restarting)."""

    fingerprint: str
    retiring: Retirement | None = None


@dataclass(frozen=True)
class Spawn:
    """Start a worker for a slot that has none."""

    slot: str


@dataclass(frozen=True)
class Retire:
    """Drain the slot's runner, deregister it and end the worker.

    ``replace``: the slot is still wanted with new settings; start it again once the
    old worker is gone (never two listeners for one slot at once).
    """

    slot: str
    replace: bool


Action = Spawn | Retire


def plan_reconcile(desired: Mapping[str, str], current: Mapping[str, Current]) -> list[Action]:
    """Actions that move ``current`` towards ``desired`` (slot name -> fingerprint).

    Retirements come first, then spawns in the config's order.
    """
    actions: list[Action] = []
    for name, now in current.items():
        wanted = desired.get(name)
        if wanted is None:
            if now.retiring is None or now.retiring == "replace":
                actions.append(Retire(name, replace=False))
        elif wanted != now.fingerprint and now.retiring is None:
            actions.append(Retire(name, replace=True))
        elif wanted == now.fingerprint and now.retiring == "remove":
            # Removed, then put back unchanged before its worker ended: start it again
            # once the old one is gone.
            actions.append(Retire(name, replace=True))
    for name in desired:
        if name not in current:
            actions.append(Spawn(name))
    return actions


@dataclass(frozen=True)
class Rollable:
    """One slot as the update roll sees it."""

    name: str
    follows_latest: bool
    version: str | None
    updating: bool = False


def plan_updates(latest: str, slots: Sequence[Rollable], max_parallel: int) -> list[str]:
    """Slots to move to ``latest`` now, keeping at most ``max_parallel`` moving at once."""
    moving = sum(1 for slot in slots if slot.updating)
    room = max(0, max_parallel - moving)
    behind = [
        slot.name
        for slot in slots
        if slot.follows_latest
        and not slot.updating
        and slot.version is not None
        and slot.version != latest
    ]
    return behind[:room]
