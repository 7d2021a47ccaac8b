"""Logging for the ``runnerctl`` logger tree, in the shape journald or a terminal expects.

Under systemd, stderr is a stream into journald, which stamps every line with its own
time, unit and pid, and reads a ``<N>`` prefix (sd-daemon(3)) as the line's syslog
priority. So there the lines carry the prefix and no timestamp; anywhere else (a
terminal, a file, a test) they carry an ISO 8601 timestamp and the level name.
systemd announces the journal stream in ``$JOURNAL_STREAM`` as ``device:inode``; it
only counts when it matches the stream we write to, because a child of the service
inherits the variable even when its stderr goes elsewhere.

Redaction here is a backstop, not the control: secrets are kept out of log calls in
the first place (SecretStr, no tokens in messages or argv). The formatter still masks
anything shaped like a GitHub token, a JWT or a PEM block, so that one careless
``%r`` does not put a credential into the journal.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from runnerctl.errors import ConfigError

#: Names accepted by ``--log-level``, quietest last.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: syslog priorities journald reads from a ``<N>`` prefix.
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7

REDACTED = "[REDACTED]"

# Each pattern matches a whole secret-shaped string; order matters only in that PEM
# blocks go first, as they may contain anything.
_SECRET_PATTERNS = (
    # PEM blocks, including one cut off before its END line.
    re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL),
    # GitHub tokens: ghp_ (classic PAT), gho_, ghu_, ghs_ (App installation), ghr_, and
    # fine-grained PATs. Their length is not fixed, so any run of token characters.
    re.compile(r"\b(?:gh[opusr]_|github_pat_)[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*"),
    # JWTs: base64url JSON header and payload (both start with eyJ, '{"'), signature.
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    # Long base64 of a JSON object, such as an encoded JIT runner configuration.
    re.compile(r"\beyJ[A-Za-z0-9+/_-]{30,}={0,2}"),
    # Whatever follows an HTTP authorization scheme.
    re.compile(r"(?<=\bBearer )\S+|(?<=\btoken )[A-Za-z0-9_.-]{20,}|(?<=\bRemoteAuth )\S+"),
)


def redact(text: str) -> str:
    """``text`` with everything that looks like a credential replaced by [REDACTED]."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def log_level(value: str) -> str:
    """The ``--log-level`` argument type: a level name, case-insensitive."""
    name = value.strip().lower()
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(_level_problem(value))
    return name


def _level_problem(value: str) -> str:
    return f"{value!r} is not a log level (use one of: {', '.join(LOG_LEVELS)})"


def journal_priority(levelno: int) -> int:
    """The syslog priority for a logging level; levels between the named ones round up."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journald stream systemd named in ``$JOURNAL_STREAM``."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        # A stream without a file descriptor (pytest's capture, StringIO) is no journal.
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, the priority repeated on every line of a long record."""

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        prefix = f"<{journal_priority(record.levelno)}>"
        # journald splits the stream into entries at newlines; without a prefix of its
        # own, a traceback's second line would be logged at the default priority.
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class TerminalFormatter(logging.Formatter):
    """``2026-12-03T17:46:53.123+0000 INFO logger: message``, secrets masked."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = time.localtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", moment)
        return f"{stamp}.{int(record.msecs):03d}{time.strftime('%z', moment)}"

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(
    level: str,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send the ``runnerctl`` logger tree to ``stream`` (default stderr) at ``level``.

    Calling it again replaces the handler it installed before. Raises ConfigError for
    an unknown level. Returns the handler, so a caller can flush or remove it.
    """
    name = level.strip().lower()
    if name not in LOG_LEVELS:
        raise ConfigError([f"--log-level: {_level_problem(level)}"])
    target = sys.stderr if stream is None else stream

    handler = logging.StreamHandler(target)
    handler.set_name("runnerctl")
    if writes_to_journal(target, environ):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    tree = logging.getLogger("runnerctl")
    for old in [h for h in tree.handlers if h.get_name() == "runnerctl"]:
        tree.removeHandler(old)
        old.close()
    tree.addHandler(handler)
    tree.setLevel(name.upper())
    # Records still propagate to the root logger, which runnerctl leaves without
    # handlers; an embedding program or pytest's caplog may listen there.
    return handler
