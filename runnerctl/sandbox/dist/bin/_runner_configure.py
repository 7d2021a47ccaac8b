"""``configure`` and ``remove``: register the runner and write, or delete, its files.

Unattended mode follows the real prompt logic: a missing value takes its default or, with
no default, fails; an invalid value is silently replaced by the default.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _runner_registration as registration
from _runner_args import CommandSettings
from _runner_common import (
    ARCH,
    CREDENTIALS_FILE,
    RSA_PARAMS_FILE,
    RUNNER_FILE,
    SERVICE_FILE,
    VERSION,
    ReturnCode,
    RunnerError,
    say,
    write_json,
)

MAX_LABEL_LENGTH = 256
DEFAULT_GROUP = "Default"
DEFAULT_WORK = "_work"

Validator = Callable[[str], bool]


def _non_empty(value: str) -> bool:
    return bool(value.strip())


def _valid_labels(value: str) -> bool:
    return all(len(label.strip()) <= MAX_LABEL_LENGTH for label in value.split(","))


class Prompter:
    """Reads each value from the inputs, else the terminal, the way PromptManager does."""

    def __init__(self, settings: CommandSettings) -> None:
        self.settings = settings
        self.unattended = settings.flag("unattended")

    def value(
        self, name: str, question: str, default: str | None, valid: Validator = _non_empty
    ) -> str:
        given = self.settings.get(name)
        if given is not None and valid(given):
            return given
        if self.unattended:
            # An invalid or missing value quietly becomes the default, if there is one.
            if default is not None:
                return default
            raise RunnerError(
                f"Invalid configuration provided for {name}. Terminating unattended configuration."
            )
        while True:
            hint = f" [press Enter for {default}]" if default else ""
            try:
                answer = input(f"{question}{hint} ").strip()
            except EOFError:
                raise RunnerError(f"No value given for {name}.") from None
            if not answer and default is not None:
                return default
            if answer and valid(answer):
                return answer

    def confirm(self, name: str, question: str) -> bool:
        if self.settings.flag(name) or self.unattended:
            return self.settings.flag(name)
        try:
            return input(f"{question} (Y/N) [press Enter for N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False


def configure(settings: CommandSettings, root: Path) -> int:
    """Register this runner and write .runner, .credentials and .credentials_rsaparams."""
    if (root / RUNNER_FILE).exists():
        raise RunnerError(
            "Cannot configure the runner because it is already configured. "
            "To reconfigure the runner, run './config.sh remove' first."
        )
    prompt = Prompter(settings)
    _banner()
    say("# Authentication")
    say()
    question = "Enter the URL of your repository, organization or enterprise:"
    url = prompt.value("url", question, None, registration.valid_server_url)
    token = _registration_token(prompt, url, "registration")
    service, service_token = registration.service_credential(url, token, "register")
    say("√ Connected to GitHub")
    say()
    agent = _agent_request(prompt, url, root)
    say("# Runner Registration")
    say()
    try:
        added = registration.add_agent(service, service_token, agent)
    except RunnerError as error:
        replace = "same name" in str(error) and prompt.confirm(
            "replace", "Would you like to replace the existing runner?"
        )
        if not replace:
            raise
        added = registration.add_agent(service, service_token, {**agent, "replace": True})
    say("√ Runner successfully added")
    _save(root, url, agent, added)
    say("√ Runner connection is good")
    say()
    say("# Runner settings")
    say()
    say("√ Settings Saved.")
    say()
    return ReturnCode.SUCCESS


def remove(settings: CommandSettings, root: Path) -> int:
    """Deregister (unless --local) and delete the local configuration files."""
    if (root / SERVICE_FILE).exists():
        raise RunnerError("Uninstall service first")
    say("# Runner removal")
    say()
    configured = (root / RUNNER_FILE).exists()
    has_credentials = (root / CREDENTIALS_FILE).exists()
    if configured and has_credentials and not settings.flag("local"):
        _deregister(Prompter(settings), root)
    elif not configured or not has_credentials:
        say("Cannot connect to server, because config files are missing. Skipping removal.")
    for name in (CREDENTIALS_FILE, RSA_PARAMS_FILE, RUNNER_FILE):
        path = root / name
        if path.exists():
            path.unlink()
            say(f"√ Removed {name}")
        else:
            say(f"Does not exist. Skipping Removing {name}")
    say()
    return ReturnCode.SUCCESS


def _deregister(prompt: Prompter, root: Path) -> None:
    from _runner_common import read_json

    runner = read_json(root / RUNNER_FILE)
    url = str(runner["gitHubUrl"])
    token = _registration_token(prompt, url, "remove")
    service, service_token = registration.service_credential(url, token, "remove")
    if registration.delete_agent(service, service_token, int(runner["agentId"])):
        say("√ Runner removed successfully")
    else:
        say("The runner is no longer registered on the server; removing local files only.")


def _registration_token(prompt: Prompter, url: str, kind: str) -> str:
    """--token, else a token fetched with --pat, else prompt (or fail when unattended)."""
    settings = prompt.settings
    if settings.get("token") is None and settings.get("pat") is not None:
        return registration.token_from_pat(url, str(settings.get("pat")), kind)
    return prompt.value("token", f"Enter runner {kind} token:", None)


def _agent_request(prompt: Prompter, url: str, root: Path) -> dict[str, Any]:
    """Every registration setting, after defaults and validation."""
    group = DEFAULT_GROUP
    if not registration.scope_path(url).startswith("repos/"):
        group = prompt.value("runnergroup", "Enter the name of the runner group:", DEFAULT_GROUP)
    name = prompt.value("name", "Enter the name of runner:", socket.gethostname())
    labels = _labels(prompt)
    work = prompt.value("work", "Enter name of work folder:", DEFAULT_WORK)
    return {
        "name": name,
        "labels": labels,
        "runnerGroup": group,
        "ephemeral": prompt.settings.flag("ephemeral"),
        "disableUpdate": prompt.settings.flag("disableupdate"),
        "replace": prompt.settings.flag("replace"),
        "version": VERSION,
        "os": "Linux",
        "arch": ARCH.upper(),
        "workFolder": work,
    }


def _labels(prompt: Prompter) -> list[str]:
    question = "Enter any additional labels (ex. label-1,label-2):"
    text = prompt.value("labels", question, "", _valid_labels)
    custom = [label.strip() for label in text.split(",") if label.strip()]
    if prompt.settings.flag("no-default-labels"):
        if not custom:
            raise RunnerError("--no-default-labels requires at least one label in --labels.")
        return custom
    defaults = ["self-hosted", "Linux", ARCH.upper()]
    return defaults + [label for label in custom if label not in defaults]


def _save(root: Path, url: str, agent: dict[str, Any], added: dict[str, Any]) -> None:
    """Write the three config files; defaults are left out of .runner as .NET does."""
    runner: dict[str, Any] = {"agentId": added["agentId"], "agentName": agent["name"]}
    if agent["disableUpdate"]:
        runner["disableUpdate"] = True
    if agent["ephemeral"]:
        runner["ephemeral"] = True
    runner.update(
        poolId=added.get("poolId", 1),
        poolName=added.get("poolName", DEFAULT_GROUP),
        serverUrl=added["serverUrl"],
        gitHubUrl=url,
        workFolder=agent["workFolder"],
    )
    credentials = {
        "scheme": "OAuth",
        "data": {
            "clientId": str(added.get("clientId", "")),
            "authorizationUrl": f"{str(added['serverUrl']).rstrip('/')}/oauth2/token",
            "requireFipsCryptography": "True",
        },
    }
    write_json(root / RSA_PARAMS_FILE, {"agentSecret": added["agentSecret"]}, private=True)
    write_json(root / CREDENTIALS_FILE, credentials)
    write_json(root / RUNNER_FILE, runner)


def _banner() -> None:
    rule = "-" * 80
    say(rule)
    say("|" + "GitHub Actions (loopback stand-in runner)".center(78) + "|")
    say("|" + f"Self-hosted runner registration, version {VERSION}".center(78) + "|")
    say(rule)
    say()
