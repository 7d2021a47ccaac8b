"""The runner REST endpoints: tokens, listing with pages and ETags, JIT configs, labels,
deletion, downloads and releases."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from typing import Any

import pytest
import requests

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import ProtocolAgent, installation_token

BASE = "/repos/octo/app/actions/runners"


class Api:
    """A tiny authenticated client for one sandbox."""

    def __init__(self, sandbox: Sandbox, token: str) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.sandbox.api_url + path
        return self.http.request(method, url, timeout=30, **kwargs)

    def jit(
        self, name: str, labels: list[str], path: str = BASE, **extra: Any
    ) -> requests.Response:
        body = {"name": name, "runner_group_id": 1, "labels": labels, **extra}
        return self.call("POST", path + "/generate-jitconfig", json=body)


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox, installation_token(sandbox))


def links(response: requests.Response) -> dict[str, str]:
    return {
        rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["Link"])
    }


def test_registration_and_remove_tokens_last_an_hour(api: Api) -> None:
    for kind in ("registration-token", "remove-token"):
        response = api.call("POST", f"{BASE}/{kind}")
        assert response.status_code == 201
        expires = time.mktime(time.strptime(response.json()["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
        assert 3500 < expires - time.mktime(time.gmtime()) <= 3600


def test_listing_pages_with_link_headers_and_a_name_filter(api: Api) -> None:
    for number in range(7):
        assert api.jit(f"ci-{number}", ["self-hosted", "linux"]).status_code == 201
    first = api.call("GET", BASE, params={"per_page": 3})
    assert first.json()["total_count"] == 7
    assert [runner["name"] for runner in first.json()["runners"]] == ["ci-0", "ci-1", "ci-2"]
    assert set(links(first)) == {"next", "last"}
    assert "page=3" in links(first)["last"]
    middle = api.call("GET", links(first)["next"])
    assert [runner["name"] for runner in middle.json()["runners"]] == ["ci-3", "ci-4", "ci-5"]
    assert set(links(middle)) == {"prev", "next", "last", "first"}
    last = api.call("GET", links(middle)["next"])
    assert [runner["name"] for runner in last.json()["runners"]] == ["ci-6"]
    assert set(links(last)) == {"prev", "first"}
    default = api.call("GET", BASE, params={"per_page": 1000})
    assert len(default.json()["runners"]) == 7 and "Link" not in default.headers
    named = api.call("GET", BASE, params={"name": "ci-4"})
    assert [runner["name"] for runner in named.json()["runners"]] == ["ci-4"]
    assert api.call("GET", BASE, params={"name": "ci-"}).json()["total_count"] == 0


def test_thirty_per_page_by_default(api: Api) -> None:
    for number in range(31):
        api.jit(f"r{number:02d}", ["linux"])
    page = api.call("GET", BASE)
    assert len(page.json()["runners"]) == 30
    assert "page=2" in links(page)["next"]


def test_etag_revalidation_is_free(api: Api) -> None:
    api.jit("ci-1", ["linux"])
    first = api.call("GET", BASE)
    used = int(first.headers["x-ratelimit-used"])
    etag = first.headers["ETag"]
    again = api.call("GET", BASE, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert int(again.headers["x-ratelimit-used"]) == used
    api.jit("ci-2", ["linux"])
    changed = api.call("GET", BASE, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert int(changed.headers["x-ratelimit-used"]) == used + 2


def test_a_fresh_jit_runner_is_offline_and_unknown(api: Api) -> None:
    response = api.jit("jit-1", ["self-hosted", "X64", "gpu"])
    assert response.status_code == 201
    runner = response.json()["runner"]
    assert (runner["os"], runner["status"], runner["busy"]) == ("unknown", "offline", False)
    assert runner["ephemeral"] is True
    assert {label["type"] for label in runner["labels"]} == {"read-only"}
    files = json.loads(base64.b64decode(response.json()["encoded_jit_config"]))
    assert set(files) == {".runner", ".credentials", ".credentials_rsaparams"}
    settings = json.loads(base64.b64decode(files[".runner"]).decode("utf-8-sig"))
    assert base64.b64decode(files[".runner"]).startswith("\ufeff".encode())
    assert settings["agentId"] == runner["id"] and settings["agentName"] == "jit-1"
    fetched = api.call("GET", f"{BASE}/{runner['id']}").json()
    assert fetched["status"] == "offline" and fetched["version"] is None


def test_jit_names_are_unique_and_bodies_are_validated(api: Api) -> None:
    assert api.jit("same", ["linux"]).status_code == 201
    taken = api.jit("same", ["linux"])
    assert taken.status_code == 409
    assert "same" in taken.json()["message"]
    assert api.jit("Same", ["linux"]).status_code == 409
    assert api.jit("other", []).status_code == 422
    assert api.jit("other", [f"l{i}" for i in range(101)]).status_code == 422
    assert api.jit("other", ["x" * 257]).status_code == 422
    assert api.jit("other", ["linux"], runner_group_id="one").status_code == 422
    missing = api.call("POST", BASE + "/generate-jitconfig", json={"name": "x", "labels": ["a"]})
    assert missing.status_code == 422
    assert isinstance(missing.json()["errors"], list)
    assert api.jit("other", ["linux"], runner_group_id=7).status_code == 404
    assert api.jit("other", [f"l{i}" for i in range(100)]).status_code == 201


def test_delete_runner_refuses_a_busy_one(sandbox: Sandbox, api: Api) -> None:
    agent = ProtocolAgent.register(sandbox, "octo/app", "busy-1", ["self-hosted", "linux"])
    try:
        assert agent.open_session().status_code == 201
        job = sandbox.enqueue_job(["linux"], duration=60)
        assert agent.next_job()["id"] == job["id"]
        busy = api.call("DELETE", f"{BASE}/{agent.agent_id}")
        assert busy.status_code == 422
        assert api.call("GET", f"{BASE}/{agent.agent_id}").json()["busy"] is True
        assert agent.complete(job["id"]).status_code == 200
        assert api.call("DELETE", f"{BASE}/{agent.agent_id}").status_code == 204
        assert api.call("DELETE", f"{BASE}/{agent.agent_id}").status_code == 404
        assert api.call("GET", f"{BASE}/{agent.agent_id}").status_code == 404
        assert agent.poll().status_code == 404
    finally:
        agent.close()


def test_label_endpoints(api: Api) -> None:
    runner_id = api.jit("labelled", ["self-hosted", "linux"]).json()["runner"]["id"]
    path = f"{BASE}/{runner_id}/labels"
    added = api.call("POST", path, json={"labels": ["gpu", "big"]})
    assert added.status_code == 200
    assert [(label["name"], label["type"]) for label in added.json()["labels"]][-2:] == [
        ("gpu", "custom"),
        ("big", "custom"),
    ]
    replaced = api.call("PUT", path, json={"labels": ["small"]})
    assert [label["name"] for label in replaced.json()["labels"]] == [
        "self-hosted",
        "linux",
        "small",
    ]
    assert api.call("DELETE", f"{path}/absent").status_code == 404
    assert api.call("DELETE", f"{path}/linux").status_code == 422
    removed = api.call("DELETE", f"{path}/small")
    assert removed.json()["total_count"] == 2
    api.call("POST", path, json={"labels": ["a"]})
    cleared = api.call("DELETE", path)
    assert [label["name"] for label in cleared.json()["labels"]] == ["self-hosted", "linux"]
    assert api.call("POST", path, json={"labels": []}).status_code == 422
    assert api.call("GET", f"{BASE}/999999/labels").status_code == 404


def test_org_and_enterprise_scopes_and_runner_groups(sandbox: Sandbox, api: Api) -> None:
    assert api.jit("org-1", ["linux"], path="/orgs/octo/actions/runners").status_code == 201
    listed = api.call("GET", "/orgs/octo/actions/runners").json()
    assert [runner["name"] for runner in listed["runners"]] == ["org-1"]
    assert api.call("GET", BASE).json()["total_count"] == 0
    groups = api.call("GET", "/orgs/octo/actions/runner-groups").json()
    assert groups["runner_groups"][0]["id"] == 1 and groups["runner_groups"][0]["default"]
    pat = Api(sandbox, sandbox.token)
    enterprise = "/enterprises/acme/actions/runners"
    assert pat.jit("ent-1", ["linux"], path=enterprise).status_code == 201
    assert pat.call("GET", enterprise).json()["total_count"] == 1
    assert pat.call("GET", "/enterprises/acme/actions/runner-groups").status_code == 200


def test_downloads_list_the_latest_with_checksums_that_match(sandbox: Sandbox, api: Api) -> None:
    listed = api.call("GET", BASE + "/downloads").json()
    assert {(item["os"], item["architecture"]) for item in listed} == {
        ("linux", "x64"),
        ("linux", "arm64"),
    }
    for item in listed:
        assert item["filename"] == f"actions-runner-linux-{item['architecture']}-2.336.0.tar.gz"
        data = requests.get(item["download_url"], timeout=30).content
        assert hashlib.sha256(data).hexdigest() == item["sha256_checksum"]


def test_releases_carry_digests_and_sha_markers(sandbox: Sandbox) -> None:
    latest = requests.get(sandbox.api_url + "/repos/actions/runner/releases/latest", timeout=30)
    assert latest.json()["tag_name"] == "v2.336.0"
    older = requests.get(
        sandbox.api_url + "/api/v3/repos/actions/runner/releases/tags/v2.334.0", timeout=30
    ).json()
    assert older["tag_name"] == "v2.334.0"
    for asset in older["assets"]:
        data = requests.get(asset["browser_download_url"], timeout=30).content
        digest = hashlib.sha256(data).hexdigest()
        assert asset["digest"] == f"sha256:{digest}" and asset["size"] == len(data)
        key = asset["name"].split("-")[2] + "-" + asset["name"].split("-")[3]
        assert f"<!-- BEGIN SHA {key} -->{digest}<!-- END SHA {key} -->" in older["body"]
        redirect = requests.get(
            asset["url"],
            headers={"Accept": "application/octet-stream"},
            allow_redirects=False,
            timeout=30,
        )
        assert redirect.status_code == 302
        assert redirect.headers["Location"] == asset["browser_download_url"]
    missing = requests.get(
        sandbox.api_url + "/repos/actions/runner/releases/tags/v1.0.0", timeout=30
    )
    assert missing.status_code == 404
    assert (
        requests.get(sandbox.api_url + "/repos/octo/app/releases/latest", timeout=30).status_code
        == 404
    )


def test_a_corrupted_tarball_no_longer_matches_its_checksum(sandbox: Sandbox) -> None:
    release = requests.get(
        sandbox.api_url + "/repos/actions/runner/releases/tags/v2.335.0", timeout=30
    ).json()
    asset = release["assets"][0]
    sandbox.corrupt("2.335.0")
    data = requests.get(asset["browser_download_url"], timeout=30).content
    assert len(data) == asset["size"]
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" != asset["digest"]
    latest = requests.get(sandbox.api_url + "/repos/actions/runner/releases/latest", timeout=30)
    good = requests.get(latest.json()["assets"][0]["browser_download_url"], timeout=30).content
    assert latest.json()["assets"][0]["digest"] == f"sha256:{hashlib.sha256(good).hexdigest()}"
