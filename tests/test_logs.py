"""Log lines: journald priority prefixes under systemd, timestamps elsewhere, secrets masked."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runnerctl.errors import ConfigError
from runnerctl.logs import REDACTED, log_level, redact, setup_logging, writes_to_journal

# A program that logs one line per level, a traceback and a token, as the service would.
PROGRAM = """
import logging, sys
from runnerctl.logs import setup_logging
setup_logging(sys.argv[1])
log = logging.getLogger("runnerctl.supervisor.root")
log.debug("reconcile: 3 slots wanted, 3 running")
log.info("started: ci-1 (pid 4242)")
log.warning("backing off: ci-2 (pid 4243, 30s)")
log.error("gave up: ci-3 (pid 4244, code 1)")
try:
    raise RuntimeError("worker pipe closed")
except RuntimeError:
    log.exception("crashed: ci-4")
log.info("token %s", "ghs_" + "A1b2C3d4" * 5)
"""

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} ")
TOKEN = "ghs_" + "A1b2C3d4" * 5


def run_program(tmp_path: Path, level: str, journal: str | None) -> list[str]:
    """Run PROGRAM with stderr in a file; ``journal`` is JOURNAL_STREAM ("match": the file)."""
    log_file = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with log_file.open("wb") as stderr:
        if journal == "match":
            info = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        elif journal is not None:
            env["JOURNAL_STREAM"] = journal
        subprocess.run(
            [sys.executable, "-c", PROGRAM, level],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=True,
        )
    return log_file.read_text().splitlines()


@pytest.fixture
def clean_tree() -> Iterator[None]:
    """Undo what setup_logging does to the runnerctl logger within this process."""
    tree = logging.getLogger("runnerctl")
    handlers, level = list(tree.handlers), tree.level
    yield
    for handler in [h for h in tree.handlers if h not in handlers]:
        tree.removeHandler(handler)
    tree.setLevel(level)


def test_journal_lines_carry_priorities_and_no_timestamps(tmp_path: Path) -> None:
    lines = run_program(tmp_path, "debug", journal="match")

    assert lines[:4] == [
        "<7>runnerctl.supervisor.root: reconcile: 3 slots wanted, 3 running",
        "<6>runnerctl.supervisor.root: started: ci-1 (pid 4242)",
        "<4>runnerctl.supervisor.root: backing off: ci-2 (pid 4243, 30s)",
        "<3>runnerctl.supervisor.root: gave up: ci-3 (pid 4244, code 1)",
    ]
    # Every line of the traceback keeps the record's priority.
    traceback = lines[4:-1]
    assert traceback[0] == "<3>runnerctl.supervisor.root: crashed: ci-4"
    assert traceback[-1] == "<3>RuntimeError: worker pipe closed"
    assert all(line.startswith("<3>") for line in traceback)
    assert lines[-1] == f"<6>runnerctl.supervisor.root: token {REDACTED}"
    assert not any(TIMESTAMP.match(line) for line in lines)


def test_terminal_lines_carry_timestamps_and_levels(tmp_path: Path) -> None:
    lines = run_program(tmp_path, "info", journal=None)

    assert all(TIMESTAMP.match(line) for line in lines[:3])
    records = [TIMESTAMP.sub("", line) for line in lines]
    assert records[:3] == [
        "INFO runnerctl.supervisor.root: started: ci-1 (pid 4242)",
        "WARNING runnerctl.supervisor.root: backing off: ci-2 (pid 4243, 30s)",
        "ERROR runnerctl.supervisor.root: gave up: ci-3 (pid 4244, code 1)",
    ]
    assert "Traceback (most recent call last):" in records
    assert records[-1] == f"INFO runnerctl.supervisor.root: token {REDACTED}"
    assert not any(line.startswith("<") for line in lines)
    assert TOKEN not in "\n".join(lines)


def test_inherited_journal_stream_for_another_file_is_ignored(tmp_path: Path) -> None:
    # A child of the service inherits JOURNAL_STREAM while its stderr goes elsewhere.
    other = os.stat(tmp_path)
    lines = run_program(tmp_path, "warning", journal=f"{other.st_dev}:{other.st_ino}")

    assert TIMESTAMP.match(lines[0])
    assert lines[0].endswith("WARNING runnerctl.supervisor.root: backing off: ci-2 (pid 4243, 30s)")


def test_level_filters_quieter_records(tmp_path: Path) -> None:
    lines = run_program(tmp_path, "ERROR", journal="match")

    assert lines[0] == "<3>runnerctl.supervisor.root: gave up: ci-3 (pid 4244, code 1)"
    assert not any(line.startswith(("<6>", "<7>", "<4>")) for line in lines)


def test_writes_to_journal_needs_a_matching_descriptor(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        info = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}

        assert writes_to_journal(stream, env)
        assert not writes_to_journal(stream, {})
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": "garbage"})
    assert not writes_to_journal(io.StringIO(), env)


def test_setup_logging_replaces_its_own_handler(clean_tree: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", stream=first)
    setup_logging("info", stream=second)

    logging.getLogger("runnerctl.test").info("replaced: ci-1 (pid 1)")

    assert first.getvalue() == ""
    assert second.getvalue().endswith("INFO runnerctl.test: replaced: ci-1 (pid 1)\n")


def test_log_level_argument_gives_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="runnerctl-manager")
    parser.add_argument("--log-level", type=log_level, default="info")

    assert parser.parse_args(["--log-level", "Warning"]).log_level == "warning"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--log-level", "loud"])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --log-level: 'loud' is not a log level (use one of: debug, info," in error
    assert "Traceback" not in error


def test_setup_logging_refuses_an_unknown_level() -> None:
    with pytest.raises(ConfigError, match=r"--log-level: 'verbose' is not a log level"):
        setup_logging("verbose", stream=io.StringIO())


@pytest.mark.parametrize(
    "secret",
    [
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        "ghp_" + "x" * 36,
        "github_pat_11AAAAAAA0_" + "b" * 59,
        "ghs_stateless.v1-" + "Q" * 80,
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiIxMjMiLCJleHAiOjF9.c2lnbmF0dXJlLXBhcnQ",
        "eyJ" + "Lm5ydW5uZXIiOiJleUpoWjJWdWRFbGtJam94ZlE9PSJ9" * 3,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n"
        "q83vEw==\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B",  # cut off mid-key
    ],
)
def test_secret_shapes_are_redacted(secret: str) -> None:
    text = redact(f"before {secret} after")

    assert text.startswith(f"before {REDACTED}")
    for fragment in secret.split():
        if len(fragment) > 8:
            assert fragment not in text


def test_authorization_values_are_redacted() -> None:
    assert redact("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {REDACTED}"
    assert redact("Authorization: RemoteAuth AABBCC") == f"Authorization: RemoteAuth {REDACTED}"


def test_ordinary_lines_are_left_alone() -> None:
    line = "exited: ci-pool-2 (pid 4242, code 0, after 3m12s); registration token refreshed"

    assert redact(line) == line
