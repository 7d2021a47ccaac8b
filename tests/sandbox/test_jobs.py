"""The runner protocol and the job queue, driven with plain HTTP (no stand-in runner)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from runnerctl.sandbox import Sandbox
from runnerctl.sandbox.fixtures import ProtocolAgent
from tests.processes import wait_for

LINUX = ["self-hosted", "Linux", "X64"]


@pytest.fixture
def agents(sandbox: Sandbox) -> Iterator[list[ProtocolAgent]]:
    """Collects the agents a test makes and closes their HTTP sessions afterwards."""
    made: list[ProtocolAgent] = []
    yield made
    for agent in made:
        agent.close()


def online(
    sandbox: Sandbox,
    agents: list[ProtocolAgent],
    target: str,
    name: str,
    labels: list[str],
    ephemeral: bool = False,
) -> ProtocolAgent:
    agent = ProtocolAgent.register(sandbox, target, name, labels, ephemeral=ephemeral)
    agents.append(agent)
    assert agent.open_session().status_code == 201
    return agent


def rest_runner(sandbox: Sandbox, runner_id: int, prefix: str = "/repos/octo/app") -> dict:
    response = requests.get(
        f"{sandbox.api_url}{prefix}/actions/runners/{runner_id}",
        headers={"Authorization": f"token {sandbox.token}"},
        timeout=30,
    )
    return dict(response.json()) if response.status_code == 200 else {"gone": response.status_code}


def test_a_job_goes_to_the_runner_whose_labels_cover_it(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    sandbox.configure(poll_seconds=0.3)  # the empty polls below end sooner
    plain = online(sandbox, agents, "octo/app", "plain", LINUX)
    gpu = online(sandbox, agents, "octo/app", "gpu", [*LINUX, "GPU"])
    job = sandbox.enqueue_job(["linux", "gpu"], duration=1)
    assert plain.poll().status_code == 204
    assert gpu.next_job() == {"id": job["id"], "name": job["name"], "duration": 1.0}
    running = sandbox.job(job["id"])
    assert (running["status"], running["runner"]) == ("running", "gpu")
    assert rest_runner(sandbox, gpu.agent_id)["busy"] is True
    assert rest_runner(sandbox, plain.agent_id)["busy"] is False
    assert gpu.complete(job["id"]).status_code == 200
    done = sandbox.wait_for_job(job["id"], "succeeded", timeout=10)
    assert done["result"] == "Succeeded"
    assert rest_runner(sandbox, gpu.agent_id)["busy"] is False
    nobody = sandbox.enqueue_job(["windows"])
    assert plain.poll().status_code == 204
    assert sandbox.job(nobody["id"])["status"] == "queued"


def test_a_busy_poll_gets_no_new_job(sandbox: Sandbox, agents: list[ProtocolAgent]) -> None:
    sandbox.configure(poll_seconds=0.3)
    agent = online(sandbox, agents, "octo/app", "one", LINUX)
    first = sandbox.enqueue_job(["linux"], duration=5)
    second = sandbox.enqueue_job(["linux"], duration=5)
    assert agent.next_job()["id"] == first["id"]
    assert sandbox.job(first["id"])["started"] is False  # handed out, not yet confirmed
    assert agent.poll(status="busy").status_code == 204
    assert sandbox.job(first["id"])["started"] is True
    assert agent.poll().status_code == 204  # still holds the first job
    agent.complete(first["id"], "Failed")
    assert sandbox.job(first["id"])["status"] == "failed"
    assert agent.next_job()["id"] == second["id"]


def test_an_enqueued_job_wakes_a_waiting_poll(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    sandbox.configure(poll_seconds=20)
    agent = online(sandbox, agents, "octo/app", "waiter", LINUX)
    answers: list[requests.Response] = []
    poller = threading.Thread(target=lambda: answers.append(agent.poll()))
    poller.start()
    # Once the poll waits, only the job can end it before its 20 s run out.
    wait_for(lambda: any(r["id"] == agent.agent_id and r["polling"] for r in sandbox.runners()))
    started = time.monotonic()
    job = sandbox.enqueue_job(["x64"])
    poller.join(timeout=15)
    assert answers and answers[0].json()["job"]["id"] == job["id"]
    assert time.monotonic() - started < 5


def test_idle_long_polls_cost_no_cpu(sandbox: Sandbox, agents: list[ProtocolAgent]) -> None:
    sandbox.configure(poll_seconds=2)
    many = [online(sandbox, agents, "octo/app", f"idle-{n}", LINUX) for n in range(40)]
    cpu_before, wall_before = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=agent.poll) for agent in many]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert time.monotonic() - wall_before >= 1.9
    # Server and clients share this process: 40 polls busy-looping for 2 s would burn
    # seconds of CPU; waiting on conditions costs a fraction of one.
    assert time.process_time() - cpu_before < 1.0


def test_scopes_decide_who_may_run_a_job(sandbox: Sandbox, agents: list[ProtocolAgent]) -> None:
    other_repo = online(sandbox, agents, "octo/other", "other", LINUX)
    org = online(sandbox, agents, "octo", "org", LINUX)
    job = sandbox.enqueue_job(["linux"], scope="repo:octo/app")
    assert other_repo.poll().status_code == 204
    assert org.next_job()["id"] == job["id"]
    enterprise = online(sandbox, agents, "enterprises/acme", "ent", LINUX)
    anywhere = sandbox.enqueue_job(["linux"], scope="repo:elsewhere/thing")
    assert enterprise.next_job()["id"] == anywhere["id"]


def test_an_ephemeral_runner_is_removed_after_its_job(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    agent = online(sandbox, agents, "octo/app", "once", LINUX, ephemeral=True)
    job = sandbox.enqueue_job(["linux"])
    agent.next_job()
    agent.complete(job["id"])
    assert rest_runner(sandbox, agent.agent_id) == {"gone": 404}
    assert agent.poll().status_code == 404
    assert agent.open_session().status_code == 404


def test_a_jit_runner_goes_online_with_its_session(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    response = requests.post(
        f"{sandbox.api_url}/repos/octo/app/actions/runners/generate-jitconfig",
        headers={"Authorization": f"token {sandbox.token}"},
        json={"name": "jit-7", "runner_group_id": 1, "labels": LINUX},
        timeout=30,
    )
    agent = ProtocolAgent.from_jit(sandbox, response.json()["encoded_jit_config"])
    agents.append(agent)
    before = rest_runner(sandbox, agent.agent_id)
    assert (before["os"], before["status"], before["version"]) == ("unknown", "offline", None)
    assert agent.open_session(version="2.335.0").status_code == 201
    after = rest_runner(sandbox, agent.agent_id)
    assert (after["os"], after["status"], after["version"]) == ("Linux", "online", "2.335.0")
    job = sandbox.enqueue_job(["linux"])
    agent.next_job()
    agent.complete(job["id"])
    assert rest_runner(sandbox, agent.agent_id) == {"gone": 404}


def test_session_conflicts_deprecation_and_bad_secrets(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    agent = online(sandbox, agents, "octo/app", "solo", LINUX)
    assert agent.open_session().status_code == 409
    assert agent.close_session().status_code == 204
    assert agent.open_session().status_code == 201
    agent.close_session()
    sandbox.configure(deprecated_versions=["2.329.0"])
    deprecated = agent.open_session(version="2.329.0")
    assert deprecated.status_code == 403 and "deprecated" in deprecated.json()["message"]
    agent.secret = "wrong"
    assert agent.open_session().status_code == 401


def test_registration_needs_a_live_token_for_the_same_scope(sandbox: Sandbox) -> None:
    auth = {"Authorization": f"token {sandbox.token}"}
    url = f"{sandbox.api_url}/repos/octo/app/actions/runners/registration-token"
    token = requests.post(url, headers=auth, timeout=30).json()["token"]
    register = f"{sandbox.server_url}/api/v3/actions/runner-registration"

    def attempt(target: str, value: str) -> int:
        body = {"url": f"{sandbox.server_url}/{target}", "runner_event": "register"}
        headers = {"Authorization": f"RemoteAuth {value}"}
        return requests.post(register, headers=headers, json=body, timeout=30).status_code

    assert attempt("octo/other", token) == 404
    assert attempt("octo/app", "NOTATOKEN") == 404
    assert attempt("octo/app", token) == 200
    sandbox.configure(registration_token_lifetime=0.5)
    short = requests.post(url, headers=auth, timeout=30).json()["token"]
    wait_for(lambda: attempt("octo/app", short) == 404, timeout=10, interval=0.2)


def test_replace_keeps_the_id_and_locks_out_the_old_secret(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    old = online(sandbox, agents, "octo/app", "twin", LINUX)
    with pytest.raises(AssertionError, match="409"):
        ProtocolAgent.register(sandbox, "octo/app", "twin", LINUX)
    auth = {"Authorization": f"token {sandbox.token}"}
    url = f"{sandbox.api_url}/repos/octo/app/actions/runners/registration-token"
    token = requests.post(url, headers=auth, timeout=30).json()["token"]
    service = requests.post(
        f"{sandbox.server_url}/actions/runner-registration",
        headers={"Authorization": f"RemoteAuth {token}"},
        json={"url": f"{sandbox.server_url}/octo/app", "runner_event": "register"},
        timeout=30,
    ).json()
    added = requests.post(
        f"{service['url']}/agents",
        headers={"Authorization": f"Bearer {service['token']}"},
        json={"name": "twin", "labels": LINUX, "replace": True, "version": "2.336.0"},
        timeout=30,
    ).json()
    assert added["agentId"] == old.agent_id
    assert old.poll().status_code in (401, 404)
    assert old.open_session().status_code == 401


def test_a_silent_runner_goes_offline_and_its_job_is_lost(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    sandbox.configure(offline_after=2, poll_seconds=0.2)
    agent = online(sandbox, agents, "octo/app", "quiet", LINUX)
    job = sandbox.enqueue_job(["linux"], duration=60)
    agent.next_job()
    assert rest_runner(sandbox, agent.agent_id)["status"] == "online"
    lost = sandbox.wait_for_job(job["id"], "lost", timeout=15)
    assert lost["runner"] == "quiet"
    runner = rest_runner(sandbox, agent.agent_id)
    assert (runner["status"], runner["busy"]) == ("offline", False)
    assert agent.poll().status_code == 404
    assert agent.open_session().status_code == 201  # it may come back


def test_closing_a_session_mid_job_loses_the_job(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    agent = online(sandbox, agents, "octo/app", "leaver", LINUX)
    job = sandbox.enqueue_job(["linux"], duration=60)
    agent.next_job()
    agent.close_session()
    assert sandbox.job(job["id"])["status"] == "lost"


def test_cancel_exit_and_update_messages(sandbox: Sandbox, agents: list[ProtocolAgent]) -> None:
    agent = online(sandbox, agents, "octo/app", "told", LINUX)
    queued = sandbox.enqueue_job(["nobody-has-this"])
    sandbox.cancel_job(queued["id"])
    assert sandbox.job(queued["id"])["status"] == "cancelled"
    job = sandbox.enqueue_job(["linux"], duration=60)
    agent.next_job()
    sandbox.cancel_job(job["id"])
    assert agent.poll(status="busy").json() == {"type": "cancel", "jobId": job["id"]}
    agent.complete(job["id"], "Canceled")
    assert sandbox.job(job["id"])["status"] == "cancelled"
    sandbox.request_update(agent.agent_id, "2.336.0")
    assert agent.poll().json() == {"type": "update", "version": "2.336.0"}
    requests.post(
        f"{sandbox.admin_url}/runners/{agent.agent_id}/exit", json={"code": 2}, timeout=30
    )
    assert agent.poll().json() == {"type": "exit", "code": 2}


def test_wait_for_job_names_what_it_saw(sandbox: Sandbox) -> None:
    job = sandbox.enqueue_job(["nobody"])
    with pytest.raises(TimeoutError, match="queued"):
        sandbox.wait_for_job(job["id"], "succeeded", timeout=0.3)
    over_http = requests.post(
        sandbox.admin_url + "/jobs",
        json={"labels": ["a"], "duration": 2, "scope": "org:octo"},
        timeout=30,
    )
    assert over_http.status_code == 201
    listed = requests.get(sandbox.admin_url + "/jobs", timeout=30).json()
    assert [item["scope"] for item in listed] == [None, "org:octo"]


def test_remove_trades_a_remove_token_for_deleting_the_agent(
    sandbox: Sandbox, agents: list[ProtocolAgent]
) -> None:
    agent = online(sandbox, agents, "octo", "leaving", LINUX)
    auth = {"Authorization": f"token {sandbox.token}"}
    tokens = f"{sandbox.api_url}/orgs/octo/actions/runners"
    register_token = requests.post(tokens + "/registration-token", headers=auth, timeout=30)
    remove_token = requests.post(tokens + "/remove-token", headers=auth, timeout=30)

    def trade(token: str) -> requests.Response:
        return requests.post(
            f"{sandbox.server_url}/api/v3/actions/runner-registration",
            headers={"Authorization": f"RemoteAuth {token}"},
            json={"url": f"{sandbox.server_url}/octo", "runner_event": "remove"},
            timeout=30,
        )

    assert trade(register_token.json()["token"]).status_code == 404  # wrong kind of token
    service = trade(remove_token.json()["token"]).json()
    delete = f"{service['url']}/agents/{agent.agent_id}"
    bearer = {"Authorization": f"Bearer {service['token']}"}
    assert requests.delete(delete, headers=bearer, timeout=30).status_code == 204
    assert rest_runner(sandbox, agent.agent_id, "/orgs/octo") == {"gone": 404}
    assert requests.delete(delete, headers=bearer, timeout=30).status_code == 404
    assert agent.poll().status_code == 404


def test_an_unknown_runner_group_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(AssertionError, match="404"):
        ProtocolAgent.register(sandbox, "octo", "grouped", LINUX, group="Nope")
    default = ProtocolAgent.register(sandbox, "octo", "grouped", LINUX, group="default")
    default.close()
    # A repository's runners are always in the default group.
    repo = ProtocolAgent.register(sandbox, "octo/app", "grouped", LINUX, group="Nope")
    repo.close()
    assert rest_runner(sandbox, repo.agent_id)["runner_group_id"] == 1
