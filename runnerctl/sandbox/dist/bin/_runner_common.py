"""What every part of the stand-in listener shares: exit codes, console, files, HTTP.

Stdlib only, and cheap to import: the benchmark starts hundreds of listeners, so the HTTP
client and JSON are imported where they are first needed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import _runner_build

VERSION: str = _runner_build.VERSION
ARCH: str = _runner_build.ARCH


class ReturnCode:
    """The listener's exit codes, as the real runner's ReturnCode table."""

    SUCCESS = 0
    TERMINATED_ERROR = 1
    RETRYABLE_ERROR = 2
    RUNNER_UPDATING = 3
    RUN_ONCE_RUNNER_UPDATING = 4
    SESSION_CONFLICT = 5
    CONFIGURATION_REFRESHED = 6
    VERSION_DEPRECATED = 7


class RunnerError(Exception):
    """A failure the listener reports on one line and turns into an exit code."""


class HttpError(RunnerError):
    """The server answered with a status the caller did not expect."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# The real runner names its config files relative to the runner root.
RUNNER_FILE = ".runner"
CREDENTIALS_FILE = ".credentials"
RSA_PARAMS_FILE = ".credentials_rsaparams"
SERVICE_FILE = ".service"
ENV_FILE = ".env"
CONFIG_FILES = (RUNNER_FILE, CREDENTIALS_FILE, RSA_PARAMS_FILE)


def runner_root() -> Path:
    """The runner root: the folder holding bin/ (bin may be a symlink after an update)."""
    return Path(os.path.abspath(sys.argv[0])).parent.parent


def timestamp() -> str:
    """UTC time in the form the real listener prints ("2026-08-17 10:00:00Z")."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())


def say(line: str = "") -> None:
    """One console line, flushed at once so log readers see it while we run."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def say_error(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def read_json(path: Path) -> Any:
    """Read a config file the way the real runner writes it: JSON, maybe with a BOM."""
    import json

    return json.loads(path.read_text(encoding="utf-8-sig"))


def write_json(path: Path, data: Any, private: bool = False) -> None:
    """Write a config file as .NET would: indented JSON, UTF-8 with a BOM."""
    import json

    text = json.dumps(data, indent=2)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    handle = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(handle, "w", encoding="utf-8-sig") as stream:
        stream.write(text)
    if private:
        os.chmod(path, 0o600)


def delete_config_files(root: Path) -> None:
    for name in CONFIG_FILES:
        (root / name).unlink(missing_ok=True)


def load_env_file(root: Path) -> None:
    """Put the KEY=VALUE lines of .env into our environment, as the real listener does."""
    try:
        lines = (root / ENV_FILE).read_text(encoding="utf-8-sig").splitlines()
    except OSError:
        return
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.lstrip().startswith("#"):
            os.environ[key.strip()] = value


def user_agent() -> str:
    return f"GitHubActionsRunner-linux-{ARCH}/{VERSION}"


def http_request(
    method: str,
    url: str,
    authorization: str | None = None,
    body: Any = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON body or None).

    Connection failures raise OSError (including timeouts) for the caller to retry or
    report; HTTP statuses are returned, never raised.
    """
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.netloc, timeout=timeout)
    headers = {"User-Agent": user_agent(), "Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except http.client.HTTPException as error:
        raise OSError(f"bad HTTP response from {parts.netloc}: {error}") from error
    finally:
        connection.close()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    return response.status, decoded


def server_message(body: Any, default: str) -> str:
    """The "message" of an error body, or ``default``."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return default
