"""Every JSON body the double sends during a representative session validates against
GitHub's schemas (runnerctl/sandbox/schemas, resolved through one referencing registry)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

import runnerctl.sandbox
from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import ProtocolAgent, app_jwt, installation_token

SCHEMAS = Path(runnerctl.sandbox.__file__).parent / "schemas"
ENDPOINTS: list[dict[str, Any]] = json.loads((SCHEMAS / "endpoints.json").read_text())


def registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        if path.name == "endpoints.json":
            continue
        contents = json.loads(path.read_text())
        assert contents["$id"] == path.name
        resources.append((path.name, Resource.from_contents(contents)))
    return Registry().with_resources(resources)


def expected_schema(method: str, path: str, status: int) -> tuple[str, str] | None:
    """(endpoint id, schema reference) for a recorded call, or None if not described."""
    for endpoint in ENDPOINTS:
        if endpoint["method"] != method:
            continue
        paths = endpoint.get("paths") or {"*": endpoint["path"]}
        for scope, template in paths.items():
            numbered = re.sub(r"\{\w+_id\}", r"\\d+", template)
            pattern = "^" + re.sub(r"\{\w+\}", "[^/]+", numbered) + "$"
            if not re.match(pattern, path):
                continue
            if status == endpoint["success_status"]:
                by_scope = endpoint.get("response_schema_by_scope", {})
                return endpoint["id"], by_scope.get(scope, endpoint["response_schema"])
            for other in endpoint["other_statuses"]:
                if other["status"] == status:
                    return endpoint["id"], other["schema"]
            return endpoint["id"], "basic-error.json"
    return None


def representative_session(sandbox: Sandbox) -> None:
    """Walk every endpoint the double serves, successes and refusals alike."""
    jwt_auth = {"Authorization": f"Bearer {app_jwt(sandbox)}"}
    token = {"Authorization": f"token {installation_token(sandbox)}"}
    pat = {"Authorization": f"token {sandbox.token}"}
    http = requests.Session()

    def call(method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = http.request(
            method, sandbox.api_url + path, headers=headers, timeout=30, **kwargs
        )
        return response.json() if response.content else None

    for lookup in ("/repos/octo/app", "/orgs/octo", "/users/octo", "/repos/nobody/x"):
        call("GET", lookup + "/installation", jwt_auth)
    call("GET", "/app/installations", jwt_auth)
    access = f"/app/installations/{sandbox.installation_id}/access_tokens"
    call("POST", access, jwt_auth, json={"permissions": {"contents": "write"}})
    call("POST", access, {"Authorization": "Bearer not.a.jwt"})
    prefixes = {"/repos/octo/app": token, "/orgs/octo": token, "/enterprises/acme": pat}
    for prefix, auth in prefixes.items():
        runners = prefix + "/actions/runners"
        call("POST", runners + "/registration-token", auth)
        call("POST", runners + "/remove-token", auth)
        body = {"name": "jit-a", "runner_group_id": 1, "labels": ["self-hosted", "linux"]}
        created = call("POST", runners + "/generate-jitconfig", auth, json=body)
        call("POST", runners + "/generate-jitconfig", auth, json=body)  # 409
        call("POST", runners + "/generate-jitconfig", auth, json={"name": "b", "labels": []})
        call(
            "POST",
            runners + "/generate-jitconfig",
            auth,
            json={**body, "name": "c", "runner_group_id": 9},
        )
        runner_id = created["runner"]["id"]
        call("GET", runners, auth, params={"per_page": 1})
        call("GET", f"{runners}/{runner_id}", auth)
        call("GET", f"{runners}/999999", auth)
        labels = f"{runners}/{runner_id}/labels"
        call("GET", labels, auth)
        call("POST", labels, auth, json={"labels": ["gpu"]})
        call("POST", labels, auth, json={"labels": []})
        call("PUT", labels, auth, json={"labels": ["big", "small"]})
        call("DELETE", labels + "/big", auth)
        call("DELETE", labels + "/absent", auth)
        call("DELETE", labels, auth)
        call("GET", runners + "/downloads", auth)
        call("DELETE", f"{runners}/{runner_id}", auth)
    call("GET", "/enterprises/acme/actions/runners", token)  # 403 for apps
    call("GET", "/repos/octo/app/actions/runners", {})  # 401
    agent = ProtocolAgent.register(sandbox, "octo/app", "busy", ["self-hosted", "linux"])
    try:
        agent.open_session()
        job = sandbox.enqueue_job(["linux"], duration=30)
        agent.next_job()
        call("DELETE", f"/repos/octo/app/actions/runners/{agent.agent_id}", token)  # 422
        agent.complete(job["id"])
    finally:
        agent.close()
    call("GET", "/repos/actions/runner/releases/latest", {})
    call("GET", "/api/v3/repos/actions/runner/releases/tags/v2.329.0", pat)
    call("GET", "/repos/actions/runner/releases/tags/v0.0.1", {})


def test_every_recorded_body_matches_its_schema(sandbox: Sandbox) -> None:
    sandbox.clear_calls()
    representative_session(sandbox)
    schemas = registry()
    checked: set[tuple[str, int]] = set()
    problems = []
    for call in sandbox.calls():
        if call["body"] is None:
            continue
        path = call["path"].removeprefix("/api/v3")
        found = expected_schema(call["method"], path, call["status"])
        if found is None:
            continue
        endpoint, reference = found
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": reference}
        validator = Draft202012Validator(schema, registry=schemas)
        for error in validator.iter_errors(call["body"]):
            problems.append(f"{call['method']} {path} {call['status']}: {error.message}")
        checked.add((endpoint, call["status"]))
    assert not problems, "\n".join(problems)
    described = {endpoint["id"] for endpoint in ENDPOINTS}
    succeeded = {endpoint for endpoint, status in checked if status < 300}
    # Every described endpoint with a body was exercised successfully...
    assert described - succeeded == {"delete-runner"}  # 204: no body
    # ...and the refusals with their own schemas too.
    statuses = {status for _, status in checked}
    assert {401, 403, 404, 409, 422} <= statuses
