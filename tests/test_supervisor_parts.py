"""Fast tests of the supervisor's parts: states, intensity, planning, channel, status."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from runnerctl.supervisor import channel as msg
from runnerctl.supervisor.intensity import Backoff, RestartIntensity, most_failing
from runnerctl.supervisor.plan import (
    Current,
    Retire,
    Rollable,
    Spawn,
    plan_reconcile,
    plan_updates,
)
from runnerctl.supervisor.records import ConfigFile, WorkerRecord
from runnerctl.supervisor.root import Phase, Root
from runnerctl.supervisor.signals import SignalInbox
from runnerctl.supervisor.states import InvalidTransition, SlotState, SlotStateMachine
from runnerctl.supervisor.status import duration, format_table, read_status, write_status
from runnerctl.systemd import Notifier


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# States -------------------------------------------------------------------------


def test_state_machine_follows_a_runner_life_and_logs_each_move(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[SlotState, SlotState]] = []
    machine = SlotStateMachine("ci-1", on_change=lambda old, new: seen.append((old, new)))
    caplog.set_level("INFO")

    for state in ("installing", "registering", "idle", "busy", "idle", "draining", "stopped"):
        machine.move(SlotState(state))

    assert machine.state is SlotState.STOPPED
    assert len(seen) == 7
    assert "state: ci-1 busy -> idle" in caplog.text


def test_a_new_reason_in_the_same_state_is_reported_again() -> None:
    seen: list[str] = []
    machine = SlotStateMachine("ci-1", on_change=lambda old, new: seen.append(machine.reason))
    machine.move(SlotState.BACKOFF, "retry in 1s")
    machine.move(SlotState.BACKOFF, "retry in 2s")
    machine.move(SlotState.BACKOFF, "retry in 2s")
    assert seen == ["retry in 1s", "retry in 2s"]


def test_state_machine_refuses_a_move_outside_the_table() -> None:
    machine = SlotStateMachine("ci-1")
    machine.move(SlotState.STOPPED)

    with pytest.raises(InvalidTransition, match="ci-1: stopped -> idle"):
        machine.move(SlotState.IDLE)
    assert not machine.can_move(SlotState.BUSY)


def test_state_machine_times_the_current_state() -> None:
    clock = Clock()
    machine = SlotStateMachine("ci-1", clock=clock)
    clock.now += 5
    assert machine.age == 5
    machine.move(SlotState.INSTALLING)
    assert machine.age == 0


def test_a_stop_is_reachable_from_every_live_state() -> None:
    for state in SlotState:
        if state is not SlotState.STOPPED:
            machine = SlotStateMachine("ci-1")
            machine.state = state
            assert machine.can_move(SlotState.STOPPED), state


# Intensity ----------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(base=1, cap=10)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_intensity_allows_r_restarts_in_t_then_backs_off() -> None:
    clock = Clock()
    intensity = RestartIntensity(max_restarts=3, period=60, clock=clock)

    delays = [intensity.record_restart() for _ in range(3)]
    assert delays == [0, 0, 0]
    assert not intensity.exceeded

    assert intensity.record_restart() == 1
    assert intensity.record_restart() == 2
    assert intensity.exceeded


def test_intensity_forgets_restarts_older_than_its_period() -> None:
    clock = Clock()
    intensity = RestartIntensity(max_restarts=2, period=60, clock=clock)
    for _ in range(4):
        intensity.record_restart()
    assert intensity.exceeded

    clock.now += 61
    assert not intensity.exceeded
    assert intensity.record_restart() == 0  # the backoff reset after a quiet period


def test_escalation_needs_most_slots_and_at_least_two() -> None:
    assert not most_failing([True])
    assert not most_failing([True, False])
    assert most_failing([True, True, False])
    assert not most_failing([True, True, False, False])
    assert most_failing([True, True])


# Reconcile planning -------------------------------------------------------------


def test_plan_starts_missing_slots_in_config_order() -> None:
    actions = plan_reconcile({"a": "1", "b": "1", "c": "1"}, {"b": Current("1")})
    assert actions == [Spawn("a"), Spawn("c")]


def test_plan_retires_removed_slots_and_replaces_changed_ones() -> None:
    current = {"a": Current("1"), "b": Current("1"), "c": Current("1")}
    actions = plan_reconcile({"a": "1", "b": "2"}, current)
    assert actions == [Retire("b", replace=True), Retire("c", replace=False)]


def test_plan_leaves_retiring_slots_alone_until_their_worker_ends() -> None:
    current = {"a": Current("1", "replace"), "b": Current("1", "remove")}
    assert plan_reconcile({"a": "2"}, current) == []


def test_plan_turns_a_removal_into_a_replacement_when_the_slot_comes_back() -> None:
    current = {"b": Current("1", "remove")}
    assert plan_reconcile({"b": "1"}, current) == [Retire("b", replace=True)]
    current = {"a": Current("1", "replace")}
    assert plan_reconcile({}, current) == [Retire("a", replace=False)]


def test_plan_of_a_matching_pool_is_empty() -> None:
    assert plan_reconcile({"a": "1"}, {"a": Current("1")}) == []


def test_updates_roll_a_few_slots_at_a_time() -> None:
    slots = [
        Rollable("a", True, "2.335.0"),
        Rollable("b", True, "2.335.0"),
        Rollable("c", True, "2.336.0"),
        Rollable("d", False, "2.335.0"),
        Rollable("e", True, "2.335.0", updating=True),
        Rollable("f", True, None),
    ]
    assert plan_updates("2.336.0", slots, max_parallel=2) == ["a"]
    assert plan_updates("2.336.0", slots, max_parallel=3) == ["a", "b"]
    assert plan_updates("2.336.0", slots, max_parallel=1) == []


# Channel ------------------------------------------------------------------------


def test_every_message_survives_the_wire() -> None:
    messages = [
        msg.Stop(mode="now", deregister=True),
        msg.StatusRequest(),
        msg.Update(version="2.336.0"),
        msg.Report(slot="ci-1", state="busy", runner_pid=42, busy=True, jobs_done=3),
        msg.Pool(runners={"ci-1": 7, "ci-2": None}),
        msg.LatestVersion(version="2.336.0"),
        msg.Notice(slot="ci-1", text="2.329.0 will be refused soon"),
    ]
    for message in messages:
        assert msg.decode(msg.encode(message)) == message


@pytest.mark.parametrize(
    "wire",
    [
        b"not json",
        b"[1]",
        b'{"v": 99, "kind": "stop"}',
        b'{"v": 1, "kind": "launch"}',
        b'{"v": 1, "kind": "stop", "force": true}',
    ],
)
def test_garbage_on_the_wire_is_a_channel_error(wire: bytes) -> None:
    with pytest.raises(msg.ChannelError):
        msg.decode(wire)


def test_a_dead_peer_shows_as_end_of_file() -> None:
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_send_and_die, args=(theirs,))
    child.start()
    theirs.close()
    channel = msg.Channel(ours)
    try:
        assert channel.receive() == msg.Report(slot="x", state="idle")
        with pytest.raises(msg.PeerGone):
            channel.receive()
        assert channel.send(msg.StatusRequest()) is False
    finally:
        child.join(10)
        channel.close()


def _send_and_die(connection: multiprocessing.connection.Connection) -> None:
    msg.Channel(connection).send(msg.Report(slot="x", state="idle"))
    os._exit(9)


# Signals ------------------------------------------------------------------------


def test_signals_are_recorded_and_wake_the_fd() -> None:
    inbox = SignalInbox([signal.SIGUSR1, signal.SIGUSR2])
    inbox.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert multiprocessing.connection.wait([inbox.fileno()], timeout=5)
        assert inbox.take() == [signal.SIGUSR2, signal.SIGUSR1]
        assert inbox.take() == []
        assert not multiprocessing.connection.wait([inbox.fileno()], timeout=0)
    finally:
        inbox.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# Config file change detection ---------------------------------------------------


def test_config_file_change_is_content_not_mtime(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("a: 1\n")
    watched = ConfigFile(path)
    watched.mark_loaded(watched.snapshot())
    assert not watched.changed()

    os.utime(path, ns=(1, 1))
    assert not watched.changed()

    path.write_text("a: 2\n")
    assert watched.changed()
    watched.mark_loaded(watched.snapshot())
    assert not watched.changed()


def test_a_config_replaced_while_it_loads_still_counts_as_changed(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("runners: [a]\n")
    watched = ConfigFile(path)
    assert watched.changed()

    seen = watched.snapshot()  # the root snapshots, then parses the file...
    replacement = tmp_path / "new.yaml"  # ...while an operator renames a new one in place
    replacement.write_text("runners: [a, b, c]\n")
    os.replace(replacement, path)
    watched.mark_loaded(seen)

    assert watched.changed(), "the replacement was never applied, so it must count"
    watched.mark_loaded(watched.snapshot())
    assert not watched.changed()


# Status -------------------------------------------------------------------------


def test_status_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    document = {"root": {"pid": os.getpid(), "config": "/x.yaml"}, "slots": []}
    write_status(tmp_path / "state", document)
    write_status(tmp_path / "state", document)

    assert read_status(tmp_path / "state")["root"]["config"] == "/x.yaml"
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["status.json"]


def test_status_table_has_one_row_per_slot() -> None:
    document = {
        "root": {"pid": os.getpid(), "config": "/etc/p.yaml", "phase": "running"},
        "slots": [
            {
                "name": "ci-1",
                "state": "busy",
                "runner_pid": 4242,
                "runner_started": 1000.0 - 192,
                "jobs_done": 3,
                "restarts": 1,
                "last_exit": 0,
            },
            {"name": "ci-2", "state": "backoff", "retry_at": 1030.0, "notice": "old version"},
        ],
    }
    table = format_table(document, now=1000.0).splitlines()

    assert table[0].startswith(f"root: pid {os.getpid()}, running, config /etc/p.yaml")
    assert table[3].split()[:2] == ["SLOT", "STATE"]
    assert table[4].split() == ["ci-1", "busy", "4242", "3m12s", "3", "1", "0", "-"]
    assert table[5].split()[:5] == ["ci-2", "backoff", "(retry", "in", "30s)"]
    assert table[-1] == "note: ci-2: old version"
    assert json.dumps(document)  # the table never needs more than the JSON holds


def test_durations_read_short() -> None:
    assert [duration(s) for s in (None, 5, 65, 3700, 90000)] == ["-", "5s", "1m05s", "1h1m", "1d1h"]


# The root's clock seam ------------------------------------------------------------


def make_root(clock: Clock) -> Root:
    def never(path: Path) -> Any:
        raise AssertionError("no config is loaded in these tests")

    return Root(
        Path("/nonexistent.yaml"),
        load=never,
        worker_main=lambda *a: 0,
        notifier=Notifier(environ={}),
        clock=clock,
    )


class StandInSlot:
    name, version, ephemeral, daemonize, directory = "ci-1", "latest", True, False, Path("/")

    def fingerprint(self) -> str:
        return "f"


def test_the_root_sleeps_until_the_next_thing_due() -> None:
    clock = Clock()
    root = make_root(clock)
    root.next_reconcile = clock.now + 10
    assert root.timeout() == 10

    waiting = WorkerRecord(slot=StandInSlot(), intensity=RestartIntensity(clock=clock))
    waiting.restart_at = clock.now + 4
    root.records["ci-1"] = waiting
    assert root.timeout() == 4

    root.phase, root.drain_deadline = Phase.DRAINING, clock.now + 2
    assert root.timeout() == 2
    clock.now += 5
    assert root.timeout() == 0


def test_deadlines_move_a_drain_to_a_stop_then_to_kills() -> None:
    clock = Clock()
    root = make_root(clock)
    root.phase = Phase.DRAINING
    root.drain_deadline, root.final_deadline = clock.now + 5, clock.now + 8

    clock.now += 5
    root.enforce_deadlines()
    assert (root.phase, root.drain_deadline) == (Phase.STOPPING, None)

    clock.now += 3
    root.enforce_deadlines()
    assert root.phase is Phase.KILLING and root.final_deadline is None
    assert root.finished()
