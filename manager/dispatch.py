"""The runner API's hot path: a claim attempt, a heartbeat, a progress report.

The endpoints are async (a claim waits in a long poll); everything that touches the
database for one of them runs here, in one call through ``manager.hot_lane``, on statements
compiled once (``manager.fastsql``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, String, bindparam, case, cast, func, select, update
from sqlmodel import Session, col

from manager.errors import Conflict, Forbidden, NotFound
from manager.fastsql import FastConnection, FastStatement, Params, transaction
from manager.models import (
    ApiKey,
    Job,
    JobFile,
    Runner,
    Task,
    UTCDateTime,
    utcnow,
)
from manager.scheduler import ClaimingRunner, any_task_runnable, claim_next_task
from manager.schemas import ClaimedJob, ClaimedTask, JobFilePublic, ProgressReply, TaskProgress
from shared.wire import JobStatus, RunnerStatus, TaskStatus

log = logging.getLogger(__name__)
FRESH = timedelta(seconds=1)
"""A claiming runner's row is rewritten (status, last seen) at most this often."""


def runner_for(session: Session, runner_id: int, key: ApiKey) -> Runner:
    runner = session.get(Runner, runner_id)
    check_runner(runner_id, runner is not None, runner.api_key_id if runner else None, key)
    assert runner is not None
    return runner


def check_runner(runner_id: int, found: bool, api_key_id: int | None, key: ApiKey) -> None:
    if not found:
        raise NotFound(f"no runner {runner_id}; register again", code="runner_not_found")
    if api_key_id != key.id:
        raise Forbidden("this runner was registered with another API key", code="wrong_runner_key")


def seen(session: Session, runner: Runner, lease_seconds: float) -> None:
    """The runner is alive: keep it online and extend the leases of its tasks."""
    now = utcnow()
    runner.last_seen_at = now
    if runner.status == RunnerStatus.OFFLINE:
        runner.status = RunnerStatus.IDLE.value
    session.add(runner)
    session.execute(
        update(Task)
        .where(col(Task.runner_id) == runner.id, col(Task.status) == TaskStatus.ACTIVE.value)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )


def stop_reason(job_status: str) -> str | None:
    """Why a runner must stop a task of a job in ``job_status`` now, or None to keep going."""
    if job_status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELED):
        return "the job was canceled"
    if job_status in (JobStatus.PAUSE_REQUESTED, JobStatus.PAUSED):
        return "the job was paused"
    if job_status == JobStatus.FAILED:
        return "the job failed"
    return None


def active_task(
    session: Session, runner: Runner, task_id: int, *, stopping_ok: bool = False
) -> tuple[Task, Job]:
    """The runner's active task; 409 if it is not (or, unless ``stopping_ok``, must stop)."""
    task = session.get(Task, task_id)
    job = session.get(Job, task.job_id) if task is not None else None
    check_active(
        task_id,
        runner.id,
        runner.name,
        task.runner_id if task else None,
        task.status if task else None,
        job.status if job else None,
        stopping_ok=stopping_ok,
    )
    assert task is not None and job is not None
    return task, job


def check_active(
    task_id: int,
    runner_id: int | None,
    runner_name: str,
    task_runner_id: int | None,
    task_status: str | None,
    job_status: str | None,
    *,
    stopping_ok: bool = False,
) -> None:
    """Raise unless the task (None: missing) is the runner's, active, and its job goes on."""
    if task_status is None:
        raise NotFound(f"no task {task_id}", code="task_not_found")
    if task_runner_id != runner_id:
        raise Conflict(f"task {task_id} is not assigned to runner {runner_name}", code="not_yours")
    if task_status != TaskStatus.ACTIVE:
        raise Conflict(
            f"task {task_id} is {task_status}; stop working on it", code="task_not_active"
        )
    assert job_status is not None
    stop = stop_reason(job_status)
    if stop is not None and not stopping_ok:
        raise Conflict(f"{stop}; stop working on task {task_id}", code="task_not_active")


@cache
def _claiming_runner() -> FastStatement:
    return FastStatement(
        select(*(col(getattr(Runner, field.name)) for field in fields(ClaimingRunner))).where(
            col(Runner.id) == bindparam("runner_id")
        )
    )


def claiming_runner(engine: Engine, runner_id: int, key: ApiKey) -> ClaimingRunner:
    """The runner, read for its claims; 404 or 403 as ``runner_for``."""
    with transaction(engine) as conn:
        row = conn.first(_claiming_runner(), {"runner_id": runner_id})
    runner = ClaimingRunner(*row) if row is not None else None
    check_runner(runner_id, runner is not None, runner.api_key_id if runner else None, key)
    assert runner is not None
    return runner


def attempt_claim(
    engine: Engine,
    runner_id: int,
    key: ApiKey,
    runner: ClaimingRunner | None,
    lease_seconds: float,
    woken: bool = False,
    warm_job_id: int | None = None,
) -> tuple[ClaimingRunner, ClaimedTask | None, bool]:
    """One claim attempt: the runner (read on the first), kept online, and its new task.

    The flag says, when a ``woken`` runner got nothing, whether another runner might take
    what there is (then the wake-up goes on); usually a runner that finished a task took
    its successor itself, and waking every waiting runner in turn would be wasted.
    """
    if runner is None:
        runner = claiming_runner(engine, runner_id, key)
    now = utcnow()
    # A claim is a sign of life: written down with the claim itself, at most once a second
    # while nothing is claimed (leases are extended by heartbeats and reports).
    stale = runner.status != RunnerStatus.IDLE or not (
        runner.last_seen_at is not None and now - runner.last_seen_at < FRESH
    )
    task_id = claim_next_task(
        engine, runner, lease_seconds=lease_seconds, now=now, seen=stale, warm_job_id=warm_job_id
    )
    if task_id is None:
        if stale:
            runner.status, runner.last_seen_at = RunnerStatus.IDLE.value, now
        return runner, None, woken and any_task_runnable(engine)
    return runner, claimed_task(engine, task_id), False


@cache
def _claimed_task_queries() -> tuple[FastStatement, FastStatement]:
    task = (
        select(
            col(Task.name),
            col(Task.type),
            col(Task.frames),
            col(Task.commands),
            col(Task.attempts),
            col(Task.job_id),
            col(Job.name).label("job_name"),
            col(Job.priority),
            col(Job.blend_file),
            col(Job.blender_version),
            col(Job.settings),
        )
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(col(Task.id) == bindparam("task"))
    )
    files = select(col(JobFile.path), col(JobFile.sha256), col(JobFile.size)).where(
        col(JobFile.job_id) == bindparam("job")
    )
    return FastStatement(task), FastStatement(files)


def claimed_task(engine: Engine, task_id: int) -> ClaimedTask:
    """What the runner needs to know about the task it just claimed (a read, no lock)."""
    task_query, files_query = _claimed_task_queries()
    with transaction(engine) as conn:
        row = conn.first(task_query, {"task": task_id})
        assert row is not None
        name, type_, frames, commands, attempts, job_id, job_name = row[:7]
        priority, blend_file, blender_version, settings = row[7:]
        files = conn.all(files_query, {"job": job_id})
    return ClaimedTask(
        id=task_id,
        name=name,
        type=type_,
        frames=list(frames),
        commands=list(commands),
        attempt=attempts,
        job=ClaimedJob(
            id=job_id,
            name=job_name,
            priority=priority,
            blend_file=blend_file,
            blender_version=blender_version,
            settings=dict(settings),
            files=[JobFilePublic(path=p, sha256=s, size=n) for p, s, n in files],
        ),
    )


STOPPING = [
    s.value
    for s in (
        JobStatus.CANCEL_REQUESTED,
        JobStatus.CANCELED,
        JobStatus.PAUSE_REQUESTED,
        JobStatus.PAUSED,
        JobStatus.FAILED,
    )
]
"""Job states in which ``stop_reason`` tells a runner to stop its tasks."""


@cache
def _heartbeat_statements() -> tuple[FastStatement, FastStatement, FastStatement, FastStatement]:
    now = bindparam("now", type_=UTCDateTime())
    key_of = select(col(Runner.api_key_id)).where(col(Runner.id) == bindparam("runner"))
    mark_seen = (
        update(Runner)
        .where(col(Runner.id) == bindparam("runner"))
        .values(
            last_seen_at=now,
            status=case(
                (col(Runner.status) == RunnerStatus.OFFLINE.value, RunnerStatus.IDLE.value),
                else_=col(Runner.status),
            ),
        )
    )
    # The leases of the runner's tasks, skipping (on PostgreSQL) a task another transaction
    # holds: that is the runner's own completion or progress report, which settles the task
    # or extends its lease itself. Waiting for it instead, while holding the runner's row that
    # the completion takes next, deadlocked the two (PostgreSQL broke one after a second).
    held = (
        select(col(Task.id))
        .where(
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
        )
        .with_for_update(skip_locked=True)
    )
    extend = (
        update(Task)
        .where(col(Task.id).in_(held.scalar_subquery()))
        .values(lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()))
    )
    stopping = (
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
            col(Job.status).in_(STOPPING),
        )
        .order_by(col(Task.id))
    )
    return (
        FastStatement(key_of),
        FastStatement(mark_seen),
        FastStatement(extend),
        FastStatement(stopping),
    )


def _alive_params(runner_id: int, lease_seconds: float) -> dict[str, Any]:
    now = utcnow()
    return {
        "runner": runner_id,
        "now": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }


def _mark_alive(conn: FastConnection, runner_id: int, key: ApiKey, params: Params) -> None:
    """The runner (checked against ``key``) is online and its task leases are extended."""
    key_of, mark_seen, extend, _ = _heartbeat_statements()
    row = conn.first(key_of, params)
    check_runner(runner_id, row is not None, row[0] if row else None, key)
    conn.rowcount(mark_seen, params)
    conn.rowcount(extend, params)


def beat(engine: Engine, runner_id: int, key: ApiKey, lease_seconds: float) -> list[int]:
    """A heartbeat: the runner is online, its leases extended; the tasks it must stop now."""
    *_, stopping = _heartbeat_statements()
    params = _alive_params(runner_id, lease_seconds)
    with transaction(engine, write=True) as conn:
        _mark_alive(conn, runner_id, key, params)
        return [task_id for (task_id,) in conn.all(stopping, params)]


GONE = "the task was canceled or handed to another runner"


@cache
def _progress_statements() -> tuple[FastStatement, FastStatement]:
    task = (
        select(
            col(Task.runner_id),
            col(Task.status),
            col(Task.job_id),
            col(Task.frames),
            col(Job.status),
        )
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(col(Task.id) == bindparam("task"))
    )
    now = bindparam("now", type_=UTCDateTime())
    record = (
        update(Task)
        .where(col(Task.id) == bindparam("task"))
        .values(
            frames_done=func.coalesce(
                cast(bindparam("frames_done", type_=Integer()), Integer), col(Task.frames_done)
            ),
            activity=func.coalesce(
                cast(bindparam("activity", type_=String()), String), col(Task.activity)
            ),
            updated_at=now,
            last_progress_at=now,
        )
    )
    return FastStatement(task), FastStatement(record)


def report_progress(
    engine: Engine,
    runner_id: int,
    key: ApiKey,
    task_id: int,
    report: TaskProgress,
    lease_seconds: float,
    log_path: Callable[[int, int], Path],
) -> ProgressReply:
    """A progress report: the runner is alive (as by a heartbeat), the task's frames done,
    activity and log recorded; the answer says whether to keep running it."""
    task_row, record = _progress_statements()
    params = {**_alive_params(runner_id, lease_seconds), "task": task_id}
    with transaction(engine, write=True) as conn:
        _mark_alive(conn, runner_id, key, params)
        found = conn.first(task_row, params)
        if found is None or found[0] != runner_id or found[1] != TaskStatus.ACTIVE:
            return ProgressReply(keep_running=False, reason=GONE)
        _, _, job_id, frames, job_status = found
        if report.log:
            append_log(log_path(job_id, task_id), report.log)
        stop = stop_reason(job_status)
        if stop is not None:
            return ProgressReply(keep_running=False, reason=stop)
        frames_done = None if report.frames_done is None else min(report.frames_done, len(frames))
        params.update(frames_done=frames_done, activity=report.activity)
        conn.rowcount(record, params)
    return ProgressReply(keep_running=True)


def append_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(line.rstrip("\n") + "\n" for line in lines)
