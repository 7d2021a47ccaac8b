"""Sessions, long-polls, the job queue and the offline sweep.

A runner is online while it holds a session and has polled within ``offline_after``
seconds (a poll in flight counts). A poll waits on the runner's own condition, so it
costs no CPU while idle; enqueuing a job wakes only the idle runners that could take it.
A job goes to the first idle runner to ask whose labels cover the job's labels
(case-insensitive) and whose scope reaches the job's scope.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from runnerctl.sandbox.state import ApiError, Job, Runner, World, random_text
from runnerctl.scope import Scope

logger = logging.getLogger(__name__)

RESULTS = {"succeeded": "succeeded", "canceled": "cancelled", "failed": "failed"}


def reaches(runner_scope: Scope, job_scope: Scope | None) -> bool:
    """Whether a runner registered at ``runner_scope`` may run a job of ``job_scope``."""
    if job_scope is None or runner_scope.kind == "enterprise" or runner_scope == job_scope:
        return True
    owner = job_scope.target.split("/")[0]
    return runner_scope.kind == "org" and job_scope.kind == "repo" and runner_scope.target == owner


def can_take(runner: Runner, job: Job) -> bool:
    return reaches(runner.scope, job.scope) and runner.has_labels(job.labels)


def enqueue(
    world: World, labels: list[str], duration: float, scope: Scope | None, name: str | None
) -> Job:
    """Queue a job and wake the idle runners that could take it."""
    with world.lock:
        job_id = world.new_job_id()
        job = Job(job_id, list(labels), float(duration), scope, name or f"job-{job_id}")
        world.jobs[job.id] = job
        world.queued[job.id] = job
        wake_one_for(world, job)
        world.job_changed.notify_all()
    logger.info("queued: job %s (labels %s)", job.id, ",".join(labels))
    return job


def wake_one_for(world: World, job: Job) -> None:
    """Wake one waiting idle runner that can take ``job``; the caller holds the lock.

    One, not all: with hundreds of runners waiting, waking every one for each job would
    cost a thread switch apiece for a single winner. A woken runner that finds the job
    gone simply waits again, and any other poll picks up what is left.
    """
    for runner in world.runners.values():
        waiting = runner.polls_in_flight and not runner.woken and runner.job_id is None
        if waiting and can_take(runner, job):
            runner.woken = True
            runner.wake.notify_all()
            return


def finish(world: World, job: Job, status: str, result: str | None = None) -> None:
    """End ``job`` with ``status``; the caller holds the lock."""
    world.queued.pop(job.id, None)
    job.status = status
    job.result = result
    job.finished_at = time.time()
    runner = world.runners.get(job.runner_id or 0)
    if runner is not None and runner.job_id == job.id:
        runner.job_id = None
    world.job_changed.notify_all()
    logger.info("finished: job %s on %s (%s)", job.id, job.runner_name, status)


def remove_runner(world: World, runner: Runner) -> None:
    """Forget ``runner``; its listener's next call gets 404. The caller holds the lock."""
    world.runners.pop(runner.id, None)
    drop_session(world, runner)
    runner.wake.notify_all()
    logger.info("removed: runner %s (id %s)", runner.name, runner.id)


def drop_session(world: World, runner: Runner) -> None:
    """End the runner's session; a job it still held is lost. The caller holds the lock."""
    if runner.session_id is not None:
        world.sessions.pop(runner.session_id, None)
        runner.session_id = None
    if runner.job_id is not None:
        job = world.jobs.get(runner.job_id)
        runner.job_id = None
        if job is not None and job.status == "running":
            finish(world, job, "lost")
    runner.wake.notify_all()


def agent_for(world: World, secret: str) -> int:
    runner_id = world.agent_secrets.get(secret)
    if runner_id is None:
        raise ApiError(401, "Bad credentials")
    return runner_id


def open_session(world: World, secret: str, agent_id: int, version: str) -> str:
    """Start a listener session: 404 deleted, 409 live session, 403 deprecated version."""
    with world.lock:
        if agent_for(world, secret) != agent_id:
            raise ApiError(401, "Bad credentials")
        runner = world.runners.get(agent_id)
        if runner is None:
            raise ApiError(404, f"Runner {agent_id} was deleted")
        if version in world.settings.deprecated_versions:
            raise ApiError(
                403,
                f"Runner version v{version} is deprecated and cannot receive messages.",
            )
        now = time.time()
        if runner.online(now, world.settings.offline_after):
            raise ApiError(409, "A session for this runner already exists.")
        drop_session(world, runner)
        runner.session_id = "s-" + random_text(24)
        world.sessions[runner.session_id] = runner.id
        runner.last_seen = now
        runner.os = "Linux"
        runner.version = version
        logger.info("session: runner %s (id %s, version %s)", runner.name, runner.id, version)
        return runner.session_id


def session_runner(world: World, session_id: str, secret: str) -> Runner:
    """The runner holding ``session_id``; the caller holds the lock."""
    runner = world.runners.get(world.sessions.get(session_id, 0))
    if runner is None or runner.session_id != session_id:
        raise ApiError(404, "Session not found")
    if runner.secret != secret:
        raise ApiError(401, "Bad credentials")
    return runner


def poll(world: World, session_id: str, secret: str, status: str) -> dict[str, Any] | None:
    """Long-poll for one message; None after ``poll_seconds`` with nothing to say."""
    with world.lock:
        runner = session_runner(world, session_id, secret)
        if status == "busy" and runner.job_id is not None:
            world.jobs[runner.job_id].started = True
            world.job_changed.notify_all()
        deadline = time.monotonic() + world.settings.poll_seconds
        runner.polls_in_flight += 1
        try:
            while True:
                runner.last_seen = time.time()
                if runner.session_id != session_id:
                    raise ApiError(404, "Session not found")
                if runner.messages:
                    return runner.messages.popleft()
                if status != "busy" and runner.job_id is None:
                    job = next_job(world, runner)
                    if job is not None:
                        return {
                            "type": "job",
                            "job": {"id": job.id, "name": job.name, "duration": job.duration},
                        }
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Cleared under the lock just before waiting, so no wake-up is lost.
                runner.woken = False
                runner.wake.wait(remaining)
        finally:
            runner.polls_in_flight -= 1
            runner.last_seen = time.time()


def next_job(world: World, runner: Runner) -> Job | None:
    """Assign the oldest queued job ``runner`` can take; the caller holds the lock."""
    for job in world.queued.values():
        if can_take(runner, job):
            del world.queued[job.id]
            job.status = "running"
            job.runner_id = runner.id
            job.runner_name = runner.name
            runner.job_id = job.id
            world.job_changed.notify_all()
            logger.info("assigned: job %s to %s (id %s)", job.id, runner.name, runner.id)
            return job
    return None


def complete(world: World, secret: str, job_id: int, result: str) -> None:
    """The runner reports a job's end; an ephemeral runner is then removed."""
    status = RESULTS.get(result.lower())
    if status is None:
        raise ApiError(422, f"Unknown job result {result!r}: use Succeeded, Canceled or Failed")
    with world.lock:
        runner = world.runners.get(agent_for(world, secret))
        job = world.jobs.get(job_id)
        if runner is None or job is None or job.runner_id != runner.id:
            raise ApiError(404, f"Job {job_id} not found")
        if job.status == "running":
            job.started = True
            finish(world, job, status, result)
        if runner.ephemeral:
            remove_runner(world, runner)


def close_session(world: World, session_id: str, secret: str) -> None:
    with world.lock:
        runner = session_runner(world, session_id, secret)
        drop_session(world, runner)
        logger.info("session closed: runner %s (id %s)", runner.name, runner.id)


def sweep(world: World) -> None:
    """Drop the sessions of runners not heard from for ``offline_after`` seconds."""
    with world.lock:
        now = time.time()
        for runner in list(world.runners.values()):
            if runner.session_id and not runner.online(now, world.settings.offline_after):
                logger.info("offline: runner %s (id %s)", runner.name, runner.id)
                drop_session(world, runner)


def send(world: World, runner_id: int, message: dict[str, Any]) -> None:
    """Queue a message (exit, update, cancel) for a runner's next poll."""
    with world.lock:
        runner = world.runners.get(runner_id)
        if runner is None:
            raise ApiError(404, f"Runner {runner_id} not found")
        if message["type"] == "update" and runner.disable_update:
            raise ApiError(409, f"Runner {runner.name} was registered with --disableupdate")
        runner.messages.append(message)
        runner.wake.notify_all()


def cancel(world: World, job_id: int) -> None:
    """Cancel a queued job at once, or ask the runner of a running job to cancel it."""
    with world.lock:
        job = world.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"Job {job_id} not found")
        if job.status == "queued":
            finish(world, job, "cancelled")
        elif job.status == "running" and job.runner_id is not None:
            send(world, job.runner_id, {"type": "cancel", "jobId": job.id})
