"""The metrics endpoint answers real HTTP scrapes from a select loop, as the root drives it."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runnerctl.errors import ConfigError
from runnerctl.metrics import Metrics, MetricsEndpoint, parse_address

STATES = ("starting", "installing", "registering", "idle", "busy", "backoff", "stopped")

SCRAPER = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    sys.stdout.write(response.headers["Content-Type"] + "\\n")
    sys.stdout.write(response.read().decode())
"""


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(states=STATES)


@pytest.fixture
def endpoint(metrics: Metrics) -> Iterator[MetricsEndpoint]:
    served = MetricsEndpoint.open("127.0.0.1:0", metrics, timeout=5.0)
    yield served
    served.close()


def serve_one(endpoint: MetricsEndpoint, timeout: float = 30.0) -> None:
    """Wait for the endpoint to become readable, as the root's wait() would, then serve."""
    readable, _, _ = select.select([endpoint], [], [], timeout)
    assert readable, "no scrape arrived"
    endpoint.handle_ready()


def url(endpoint: MetricsEndpoint, path: str = "/metrics") -> str:
    host, port = endpoint.address
    return f"http://{host}:{port}{path}"


def scrape(endpoint: MetricsEndpoint, tmp_path: Path) -> tuple[str, dict[str, float]]:
    """Scrape from a separate process; the content type and every sample by name+labels."""
    scraper = subprocess.Popen(
        [sys.executable, "-c", SCRAPER, url(endpoint)],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        text=True,
    )
    try:
        serve_one(endpoint)
        output, _ = scraper.communicate(timeout=30)
    finally:
        scraper.kill()
        scraper.wait()
    assert scraper.returncode == 0
    content_type, text = output.split("\n", 1)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return content_type, samples


def request_in_thread(address: str, method: str = "GET") -> dict[str, object]:
    """Start one HTTP request in a thread; the dict gets its status and body."""
    result: dict[str, object] = {}

    def run() -> None:
        request = urllib.request.Request(address, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result["status"], result["body"] = response.status, response.read()
        except urllib.error.HTTPError as error:
            result["status"], result["body"] = error.code, error.read()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def finish(result: dict[str, object]) -> None:
    thread = result["thread"]
    assert isinstance(thread, threading.Thread)
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_scrape_reports_the_pool(
    metrics: Metrics, endpoint: MetricsEndpoint, tmp_path: Path
) -> None:
    metrics.observe_slot("ci-1", "idle", busy=False, jobs=4, restarts=0)
    metrics.observe_slot("ci-2", "busy", busy=True, jobs=7, restarts=1)
    metrics.observe_slot("ci-3", "busy", busy=True, jobs=0, restarts=0)
    metrics.observe_slot("ci-4", "backoff", busy=None, jobs=2, restarts=5)
    metrics.runner_exited("ci-4", 1)
    metrics.runner_exited("ci-4", 1)
    metrics.runner_exited("ci-1", 0)
    metrics.reconcile_took(0.004)
    metrics.reconcile_took(0.2)
    metrics.api(calls=12, remaining=4990, process="ci-1")
    metrics.api(calls=3, remaining=4987, process="root")

    content_type, samples = scrape(endpoint, tmp_path)

    assert content_type.startswith("text/plain; version=")
    assert samples["runnerctl_slots{state=busy}"] == 2
    assert samples["runnerctl_slots{state=idle}"] == 1
    assert samples["runnerctl_slots{state=backoff}"] == 1
    assert samples["runnerctl_slots{state=registering}"] == 0
    assert samples["runnerctl_runners_busy{}"] == 2
    assert samples["runnerctl_runners_idle{}"] == 1
    assert samples["runnerctl_jobs_completed_total{slot=ci-2}"] == 7
    assert samples["runnerctl_slot_restarts_total{slot=ci-4}"] == 5
    assert samples["runnerctl_runner_exits_total{code=1,slot=ci-4}"] == 2
    assert samples["runnerctl_runner_exits_total{code=0,slot=ci-1}"] == 1
    assert samples["runnerctl_github_api_calls_total{process=ci-1}"] == 12
    assert samples["runnerctl_github_api_calls_total{process=root}"] == 3
    assert samples["runnerctl_github_rate_limit_remaining{}"] == 4987
    assert samples["runnerctl_reconcile_duration_seconds_count{}"] == 2
    assert samples["runnerctl_reconcile_duration_seconds_sum{}"] == pytest.approx(0.204)
    assert samples["runnerctl_reconcile_duration_seconds_bucket{le=0.005}"] == 1


def test_values_follow_updates(metrics: Metrics, endpoint: MetricsEndpoint, tmp_path: Path) -> None:
    metrics.observe_slot("ci-1", "busy", busy=True, jobs=0, restarts=0)
    metrics.observe_slot("ci-2", "idle", busy=False, jobs=0, restarts=0)
    _, before = scrape(endpoint, tmp_path)

    metrics.observe_slot("ci-1", "idle", busy=False, jobs=1, restarts=0)
    metrics.runner_exited("ci-2", 2)
    metrics.forget_slot("ci-2")
    metrics.api(calls=1, remaining=None)
    _, after = scrape(endpoint, tmp_path)

    assert before["runnerctl_runners_busy{}"] == 1
    assert after["runnerctl_runners_busy{}"] == 0
    assert after["runnerctl_slots{state=idle}"] == 1
    assert after["runnerctl_jobs_completed_total{slot=ci-1}"] == 1
    assert not any("ci-2" in key for key in after)
    # No rate-limit report yet: no sample rather than a made-up number.
    assert "runnerctl_github_rate_limit_remaining{}" not in after


def test_enum_states_are_exported_by_value(endpoint: MetricsEndpoint, tmp_path: Path) -> None:
    from runnerctl.supervisor.states import SlotState

    metrics = Metrics(states=list(SlotState))
    metrics.observe_slot("ci-1", SlotState.DRAINING, busy=True, jobs=0, restarts=0)
    endpoint.metrics = metrics

    _, samples = scrape(endpoint, tmp_path)

    assert samples["runnerctl_slots{state=draining}"] == 1
    assert samples["runnerctl_slots{state=stopped}"] == 0


def test_other_paths_get_404_and_head_gets_no_body(endpoint: MetricsEndpoint) -> None:
    missing = request_in_thread(url(endpoint, "/"))
    serve_one(endpoint)
    finish(missing)
    head = request_in_thread(url(endpoint), method="HEAD")
    serve_one(endpoint)
    finish(head)
    post = request_in_thread(url(endpoint), method="POST")
    serve_one(endpoint)
    finish(post)

    assert missing["status"] == 404
    assert head["status"] == 200 and head["body"] == b""
    assert post["status"] == 405


@pytest.mark.timeout(60)
def test_stalled_client_costs_at_most_the_timeout(metrics: Metrics) -> None:
    endpoint = MetricsEndpoint.open("127.0.0.1:0", metrics, timeout=0.5)
    try:
        with socket.create_connection(endpoint.address, timeout=30) as stalled:
            started = time.monotonic()
            serve_one(endpoint)  # the client never sends its request
            took = time.monotonic() - started
            assert stalled.recv(100) == b""  # the endpoint gave up and closed it
        assert 0.4 <= took < 10

        # The next scrape is served as usual.
        result = request_in_thread(url(endpoint))
        serve_one(endpoint)
        finish(result)
        assert result["status"] == 200
    finally:
        endpoint.close()


def test_garbage_request_is_dropped(endpoint: MetricsEndpoint) -> None:
    with socket.create_connection(endpoint.address, timeout=30) as client:
        client.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        serve_one(endpoint)
        assert client.recv(100) == b""


def test_handle_ready_without_a_client_returns_at_once(endpoint: MetricsEndpoint) -> None:
    started = time.monotonic()
    endpoint.handle_ready()
    assert time.monotonic() - started < 5


@pytest.mark.timeout(60)
def test_forked_child_does_not_hold_the_port(endpoint: MetricsEndpoint) -> None:
    port = endpoint.address[1]
    started_read, started_write = os.pipe()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker: fork hooks have run once fork() returns here
        os.write(started_write, b"x")
        os.read(release_read, 1)
        os._exit(0)
    try:
        assert os.read(started_read, 1) == b"x"
        endpoint.close()
        # Nothing may still listen on the port, or this bind fails with EADDRINUSE.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen(1)
    finally:
        os.write(release_write, b"x")
        os.waitpid(pid, 0)
        for fd in (started_read, started_write, release_read, release_write):
            os.close(fd)


def test_port_in_use_is_a_config_error(metrics: Metrics, endpoint: MetricsEndpoint) -> None:
    host, port = endpoint.address

    with pytest.raises(
        ConfigError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*choose a free port"
    ):
        MetricsEndpoint.open(f"{host}:{port}", metrics)


def test_address_parsing() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    assert parse_address("localhost:0") == ("localhost", 0)
    for bad in ("9464", ":9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="is not host:port"):
            parse_address(bad)
