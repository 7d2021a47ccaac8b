"""Forking the root's children: one worker per slot, and the janitor.

The fork start method is chosen explicitly (``spawn`` or ``forkserver`` would re-import
everything per worker and could not inherit the loaded configuration). Before each
fork the root's objects are frozen out of the garbage collector, so that a collection
in a child never writes to the pages it shares with the root: workers stay small.
After the fork the child drops everything that belongs to the root: its signal
handlers and wakeup fd, and its ends of every other child's pipe, so that each pipe
sees end-of-file exactly when its own two processes are gone.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import setproctitle

from runnerctl.supervisor.channel import Channel
from runnerctl.supervisor.signals import SignalInbox

log = logging.getLogger(__name__)

FORK = multiprocessing.get_context("fork")

TITLE_PREFIX = "runnerctl-manager"


def set_title(text: str) -> None:
    """Name this process ``runnerctl-manager: <text>`` in ``ps``."""
    setproctitle.setproctitle(f"{TITLE_PREFIX}: {text}")


def fork_child(
    name: str,
    body: Callable[[Channel], int],
    inbox: SignalInbox,
    parent_ends: Iterable[Connection],
) -> tuple[BaseProcess, Channel]:
    """Fork a child that runs ``body(channel)``; return it and the root's end of its pipe.

    ``parent_ends``: the root's ends of its other children's pipes, closed in the child.
    """
    if threading.active_count() > 1:
        # A fork copies only the calling thread; a lock held by another one stays held.
        log.warning("forking %s with %d threads running", name, threading.active_count())
    ours, theirs = FORK.Pipe(duplex=True)
    inherited = [*parent_ends, ours]
    gc.freeze()
    process = FORK.Process(
        target=_child_main, args=(name, body, theirs, inbox, inherited), name=name
    )
    process.start()
    theirs.close()
    return process, Channel(ours)


def _child_main(
    name: str,
    body: Callable[[Channel], int],
    connection: Connection,
    inbox: SignalInbox,
    inherited: list[Connection],
) -> None:
    inbox.forget_in_child()
    for end in inherited:
        end.close()
    set_title(name)
    try:
        status = body(Channel(connection))
    except Exception:
        log.exception("crashed: %s (pid %d)", name, os.getpid())
        status = 1
    # Skip the interpreter's exit handlers: they belong to the root (multiprocessing
    # would try to join the root's other children).
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
