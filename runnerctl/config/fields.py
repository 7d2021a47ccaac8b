"""Field types of the configuration: each one parses and checks a single value.

Every check raises ``invalid(...)`` with a message that names the bad value and the fix;
the loader puts the file and the key path in front of it. Messages never repeat the key,
because the loader already says where the value sits.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

# A runner's name becomes a folder under base_dir, a GitHub runner name and an argv value.
# GitHub keeps names to 64 characters; runnerctl adds: letters, digits, '.', '_' and '-',
# starting with a letter or digit (the runner drops argv values that start with '-').
NAME_MAX = 64
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION_PATTERN = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
LABEL_MAX = 256  # the runner silently drops every label when one is longer
LABELS_MAX = 100  # GitHub's limit on labels per runner
DEFAULT_LABELS = ("self-hosted", "linux", "x64")


def invalid(message: str) -> PydanticCustomError:
    """An error pydantic reports with ``message`` verbatim (braces in it stay literal)."""
    return PydanticCustomError("runnerctl", "{detail}", {"detail": message})


def show(value: object) -> str:
    """A short, quoted rendering of a value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid(f"{show(value)} is not {what}")
    return str(value).strip()


def parse_labels(value: object) -> tuple[str, ...]:
    """Labels from ``"a,b"`` or ``[a, b]``: stripped, no empties, duplicates dropped."""
    if isinstance(value, str):
        items: list[object] = list(value.split(","))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise invalid(f"{show(value)} is not a comma-separated string or a list of labels")
    labels: dict[str, str] = {}
    for item in items:
        label = _text(item, "a label")
        if "," in label:
            raise invalid(f"label {show(label)} contains a comma; list the labels separately")
        if len(label) > LABEL_MAX:
            raise invalid(f"label {show(label)} is longer than {LABEL_MAX} characters")
        if label:
            labels.setdefault(label.lower(), label)  # GitHub compares labels case-blind
    if not labels:
        raise invalid("no labels; give at least one, e.g. self-hosted,linux,x64")
    if len(labels) > LABELS_MAX:
        raise invalid(f"{len(labels)} labels; GitHub allows at most {LABELS_MAX}")
    return tuple(labels.values())


def parse_version(value: object) -> str:
    """``latest`` or ``X.Y.Z``; a leading ``v`` gets a hint rather than a silent fix."""
    text = _text(value, "latest or a version X.Y.Z")
    if text == "latest" or VERSION_PATTERN.match(text):
        return text
    if text[:1] in "vV" and VERSION_PATTERN.match(text[1:]):
        raise invalid(f"{show(text)} is neither latest nor X.Y.Z (write {text[1:]})")
    raise invalid(f"{show(text)} is neither latest nor X.Y.Z (e.g. latest or 2.336.0)")


def parse_workdir(value: object) -> str:
    """A folder relative to the runner's directory that stays inside it."""
    text = _text(value, "a relative folder name")
    if not text:
        raise invalid("is empty; use a relative folder such as _work")
    path = PurePosixPath(text)
    if path.is_absolute():
        raise invalid(f"{show(text)} is absolute; use a folder relative to the runner, e.g. _work")
    if ".." in path.parts:
        raise invalid(f"{show(text)} escapes the runner's folder with '..'; use e.g. _work")
    return str(path)


def parse_absolute_path(value: object) -> Path:
    """An absolute path without ``..``."""
    if isinstance(value, Path):
        value = str(value)
    text = _text(value, "an absolute path")
    path = PurePosixPath(text)
    if not path.is_absolute():
        raise invalid(f"{show(text)} is relative; give an absolute path such as /{text}")
    if ".." in path.parts:
        raise invalid(f"{show(text)} contains '..'; give the folder itself")
    return Path(str(path))


def check_runner_name(name: str, what: str = "runner name") -> str | None:
    """Why GitHub or runnerctl would refuse ``name``, or None when it is fine."""
    if not name:
        return f"empty {what}"
    if len(name) > NAME_MAX:
        return f"{what} {show(name)} is longer than {NAME_MAX} characters"
    if not NAME_PATTERN.match(name):
        return (
            f"{what} {show(name)} may only use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return None


def parse_runner_name(value: object) -> str:
    """A runner name (see ``check_runner_name``)."""
    text = _text(value, "a runner name")
    problem = check_runner_name(text)
    if problem:
        raise invalid(problem)
    return text


def parse_group(value: object) -> str:
    """A runner group name as GitHub shows it."""
    text = _text(value, "a runner group name")
    if not text or text.startswith("-"):
        raise invalid(f"{show(text)} is not a runner group name (e.g. Default)")
    return text


def parse_user(value: object) -> str:
    """A local user name (existence is checked when a runner starts, not here)."""
    text = _text(value, "a user name")
    if not USER_PATTERN.match(text):
        raise invalid(f"{show(text)} is not a user name (e.g. runner)")
    return text


def parse_env(value: object) -> dict[str, str]:
    """Extra runner environment: NAME -> value, scalars written as strings."""
    if not isinstance(value, dict):
        raise invalid(f"{show(value)} is not a mapping of NAME: value")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME_PATTERN.match(key):
            raise invalid(f"{show(key)} is not an environment variable name (e.g. HTTP_PROXY)")
        if key.upper().startswith("ACTIONS_RUNNER_INPUT_"):
            raise invalid(f"{key} would reconfigure the runner; use runnerctl's own keys instead")
        if isinstance(item, bool):
            env[key] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            env[key] = str(item)
        else:
            raise invalid(f"{key}: {show(item)} is not a string; quote it, e.g. {key}: ''")
    return env


def parse_url(value: object) -> str:
    """An http(s) URL without a trailing slash."""
    text = _text(value, "a URL")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"{show(text)} is not an http(s) URL, e.g. https://github.com")
    return text.rstrip("/")


def parse_address(value: object) -> str:
    """``host:port`` (``[v6]:port`` for IPv6) for the metrics listener."""
    text = _text(value, "host:port")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise invalid(f"{show(text)} is not host:port, e.g. 127.0.0.1:9100")
    return text


def parse_app_id(value: object) -> str:
    """A GitHub App id (digits) or client id (``Iv1.…``); both sign a JWT."""
    text = _text(value, "a GitHub App id")
    if not text or not re.match(r"^[A-Za-z0-9._-]+$", text):
        raise invalid(f"{show(text)} is not a GitHub App id (e.g. 123456)")
    return text


def _optional(parse: Any) -> Any:
    return lambda value: None if value is None else parse(value)


Labels = Annotated[tuple[str, ...], BeforeValidator(parse_labels)]
Version = Annotated[str, BeforeValidator(parse_version)]
Workdir = Annotated[str, BeforeValidator(parse_workdir)]
AbsolutePath = Annotated[Path, BeforeValidator(parse_absolute_path)]
OptionalAbsolutePath = Annotated[Path | None, BeforeValidator(_optional(parse_absolute_path))]
RunnerName = Annotated[str, BeforeValidator(parse_runner_name)]
RunnerGroup = Annotated[str, BeforeValidator(parse_group)]
User = Annotated[str | None, BeforeValidator(_optional(parse_user))]
Env = Annotated[dict[str, str], BeforeValidator(parse_env)]
Url = Annotated[str, BeforeValidator(parse_url)]
OptionalUrl = Annotated[str | None, BeforeValidator(_optional(parse_url))]
Address = Annotated[str | None, BeforeValidator(_optional(parse_address))]
AppId = Annotated[str | None, BeforeValidator(_optional(parse_app_id))]
