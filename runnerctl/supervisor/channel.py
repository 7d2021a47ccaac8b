"""The control channel between the root and one child: typed, versioned messages.

Choices weighed:

* **Pickled objects over ``Connection.send``** would be shortest, but a pickle from a
  newer or older process (a worker that outlived an upgrade of the package) could
  fail in confusing ways, and unpickling runs code. Messages here are plain JSON with
  a version number, decoded into frozen dataclasses; an unknown kind or version is a
  clear ``ChannelError``.
* **Sockets or FIFOs in ``state_dir``** would let a new root talk to old workers, but
  a worker never outlives its root (it leaves daemonized runners behind instead), so
  an anonymous ``multiprocessing.Pipe`` per child is enough and needs no cleanup.
* **A dead peer** is seen as end-of-file on the pipe, never as a timeout: each side
  closes the other's end after forking, so the last writer going away makes the pipe
  readable and ``receive`` raises ``PeerGone``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar, Literal

log = logging.getLogger(__name__)

#: Bumped whenever a message changes shape; both ends must agree.
VERSION = 1

StopMode = Literal["drain", "now", "detach"]


class ChannelError(RuntimeError):
    """A message that cannot be decoded: wrong version, unknown kind, bad fields."""


class PeerGone(EOFError):
    """The other end of the pipe closed: the peer exited or was killed."""


@dataclass(frozen=True)
class Message:
    """Base of every message; ``kind`` names it on the wire."""

    kind: ClassVar[str] = ""


# Root -> worker ------------------------------------------------------------------


@dataclass(frozen=True)
class Stop(Message):
    """End the worker.

    ``drain`` waits for a running job to end before stopping the runner, ``now``
    stops it at once (cancelling a job), ``detach`` leaves a daemonized runner
    running for the next manager to adopt. ``deregister`` removes the registration
    from GitHub once the runner is down.
    """

    kind: ClassVar[str] = "stop"
    mode: StopMode = "drain"
    deregister: bool = False


@dataclass(frozen=True)
class StatusRequest(Message):
    """Ask the worker to send a fresh ``Report``."""

    kind: ClassVar[str] = "status"


@dataclass(frozen=True)
class Update(Message):
    """A newer runner version is out; move to it between jobs."""

    kind: ClassVar[str] = "update"
    version: str = ""


# Worker -> root ------------------------------------------------------------------


@dataclass(frozen=True)
class Report(Message):
    """A worker's whole view of its slot, sent on every state change and on request.

    Times are epoch seconds (they are shown to people and cross processes).
    """

    kind: ClassVar[str] = "report"
    slot: str = ""
    state: str = "starting"
    reason: str = ""
    runner_pid: int | None = None
    runner_id: int | None = None
    runner_started: float | None = None
    runner_version: str | None = None
    busy: bool = False
    jobs_done: int = 0
    restarts: int = 0
    exits: int = 0
    last_exit: int | None = None
    retry_at: float | None = None
    api_calls: int = 0
    rate_remaining: int | None = None


# Root -> janitor -----------------------------------------------------------------


@dataclass(frozen=True)
class Pool(Message):
    """The pool's slot names, each with the GitHub runner id it runs now (None: unsure).

    The janitor deletes an offline registration with a pool name only when the slot
    runs a different, known runner: a slot in the middle of registering is left alone.
    """

    kind: ClassVar[str] = "pool"
    runners: dict[str, int | None] = dataclasses.field(default_factory=dict)


# Janitor -> root -----------------------------------------------------------------


@dataclass(frozen=True)
class LatestVersion(Message):
    """The janitor saw this runner version as the newest one GitHub serves."""

    kind: ClassVar[str] = "latest"
    version: str = ""


@dataclass(frozen=True)
class Notice(Message):
    """Something a person should see in status, such as a soon-refused pinned version."""

    kind: ClassVar[str] = "notice"
    slot: str = ""
    text: str = ""


KINDS: dict[str, type[Message]] = {
    cls.kind: cls for cls in (Stop, StatusRequest, Update, Report, Pool, LatestVersion, Notice)
}


def encode(message: Message) -> bytes:
    """The wire form: one JSON object with version and kind."""
    body: dict[str, Any] = {"v": VERSION, "kind": message.kind}
    body.update(dataclasses.asdict(message))
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> Message:
    """Parse the wire form; raise ChannelError on anything unexpected."""
    try:
        body = json.loads(data)
    except ValueError as error:
        raise ChannelError(f"control message is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ChannelError("control message is not a JSON object")
    version = body.pop("v", None)
    if version != VERSION:
        raise ChannelError(f"control message version {version!r}, expected {VERSION}")
    cls = KINDS.get(str(body.pop("kind", "")))
    if cls is None:
        raise ChannelError("control message of unknown kind")
    try:
        return cls(**body)
    except TypeError as error:
        raise ChannelError(f"control message {cls.kind!r} has bad fields: {error}") from None


class Channel:
    """One end of a control pipe."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def fileno(self) -> int:
        """The pipe's fd, for ``multiprocessing.connection.wait``."""
        return self.connection.fileno()

    def send(self, message: Message) -> bool:
        """Send ``message``; False when the peer is gone (its exit is handled elsewhere)."""
        try:
            self.connection.send_bytes(encode(message))
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False
        return True

    def receive(self) -> Message:
        """Read one message; raise PeerGone at end-of-file, ChannelError on garbage."""
        try:
            data = self.connection.recv_bytes()
        except (EOFError, ConnectionResetError, OSError):
            raise PeerGone("control pipe closed") from None
        return decode(data)

    def receive_ready(self) -> list[Message]:
        """Every message already waiting, without blocking; PeerGone at end-of-file."""
        messages = [self.receive()]
        try:
            while self.connection.poll(0):
                messages.append(self.receive())
        except PeerGone:
            pass  # hand over what arrived first; the next receive raises again
        return messages

    def close(self) -> None:
        """Close this end; the peer sees end-of-file once every copy is closed."""
        self.connection.close()
