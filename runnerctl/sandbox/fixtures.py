"""pytest fixtures and small drivers for the double; tests/conftest.py imports them.

``sandbox`` is a fresh double per test, installed everywhere, its key and tarball cache
inside the test's own temporary folder. ``app_jwt`` and ``installation_token`` speak the
App auth flow; ``ProtocolAgent`` plays a runner over the runner protocol with plain
HTTP, so the double can be tested without the stand-in runner.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.protocol import scope_of_url

SERVICE_TIMEOUT = 30.0


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A running Sandbox, stopped after the test even when it fails."""
    with Sandbox(root=tmp_path / "sandbox") as double:
        yield double


def app_jwt(
    sandbox: Sandbox,
    iat_offset: float = -30,
    lifetime: float = 540,
    issuer: str | int | None = None,
    key_pem: bytes | None = None,
) -> str:
    """A JWT for the sandbox's app; every argument can break one of GitHub's rules."""
    iat = int(time.time() + iat_offset)
    claims = {"iat": iat, "exp": int(iat + lifetime), "iss": str(issuer or sandbox.app_id)}
    key = key_pem if key_pem is not None else sandbox.private_key_file.read_bytes()
    return jwt.encode(claims, key, algorithm="RS256")


def installation_token(sandbox: Sandbox, **body: Any) -> str:
    """A fresh installation access token (the body may narrow ``permissions``)."""
    response = requests.post(
        f"{sandbox.api_url}/app/installations/{sandbox.installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(sandbox)}"},
        json=body or None,
        timeout=SERVICE_TIMEOUT,
    )
    response.raise_for_status()
    return str(response.json()["token"])


class ProtocolAgent:
    """One runner registration driven over the runner protocol with ``requests``."""

    def __init__(self, sandbox: Sandbox, files: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.agent_id = int(files[".runner"]["agentId"])
        self.name = str(files[".runner"]["agentName"])
        self.service = str(files[".runner"]["serverUrl"])
        self.secret = str(files[".credentials_rsaparams"]["agentSecret"])
        self.session_id: str | None = None

    @classmethod
    def register(
        cls,
        sandbox: Sandbox,
        target: str,
        name: str,
        labels: list[str],
        ephemeral: bool = False,
        group: str = "Default",
    ) -> ProtocolAgent:
        """Register like ``config.sh --url <server>/<target>`` with a fresh token."""
        scope = scope_of_url(f"{sandbox.server_url}/{target}")
        auth = {"Authorization": f"token {sandbox.token}"}
        url = f"{sandbox.api_url}{scope.api_prefix}/actions/runners/registration-token"
        token = requests.post(url, headers=auth, timeout=SERVICE_TIMEOUT).json()["token"]
        service = _ok(
            requests.post(
                f"{sandbox.server_url}/api/v3/actions/runner-registration",
                headers={"Authorization": f"RemoteAuth {token}"},
                json={"url": f"{sandbox.server_url}/{target}", "runner_event": "register"},
                timeout=SERVICE_TIMEOUT,
            )
        )
        agent = {
            "name": name,
            "labels": labels,
            "runnerGroup": group,
            "ephemeral": ephemeral,
            "disableUpdate": False,
            "replace": False,
            "version": "2.336.0",
            "os": "Linux",
            "arch": "X64",
            "workFolder": "_work",
        }
        added = _ok(
            requests.post(
                f"{service['url']}/agents",
                headers={"Authorization": f"Bearer {service['token']}"},
                json=agent,
                timeout=SERVICE_TIMEOUT,
            )
        )
        files = {
            ".runner": {
                "agentId": added["agentId"],
                "agentName": name,
                "serverUrl": added["serverUrl"],
            },
            ".credentials_rsaparams": {"agentSecret": added["agentSecret"]},
        }
        return cls(sandbox, files)

    @classmethod
    def from_jit(cls, sandbox: Sandbox, encoded: str) -> ProtocolAgent:
        """The runner a ``generate-jitconfig`` answer describes."""
        entries = json.loads(base64.b64decode(encoded))
        files = {
            name: json.loads(base64.b64decode(value).decode("utf-8-sig"))
            for name, value in entries.items()
        }
        return cls(sandbox, files)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.secret}"}
        return self.http.request(
            method, self.service + path, headers=headers, timeout=SERVICE_TIMEOUT, **kwargs
        )

    def open_session(self, version: str = "2.336.0") -> requests.Response:
        response = self._call(
            "POST", "/sessions", json={"agentId": self.agent_id, "version": version}
        )
        if response.status_code == 201:
            self.session_id = response.json()["sessionId"]
        return response

    def poll(self, status: str = "idle") -> requests.Response:
        return self._call("GET", f"/sessions/{self.session_id}/message", params={"status": status})

    def next_job(self, deadline: float = 20.0) -> dict[str, Any]:
        """Poll until a job message arrives."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            response = self.poll()
            if response.status_code == 200 and response.json()["type"] == "job":
                return dict(response.json()["job"])
            assert response.status_code in (200, 204), response.text
        raise AssertionError(f"{self.name} got no job within {deadline}s")

    def complete(self, job_id: int, result: str = "Succeeded") -> requests.Response:
        return self._call("POST", f"/jobs/{job_id}/complete", json={"result": result})

    def close_session(self) -> requests.Response:
        return self._call("DELETE", f"/sessions/{self.session_id}")

    def close(self) -> None:
        self.http.close()


def _ok(response: requests.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"{response.status_code} {response.text}"
    return dict(response.json())
