"""Completing a task: checked by a read, written by a few statements in a short transaction.

On SQLite every write waits for the one write lock, so what happens while holding it is kept
to plain statements whose own conditions repeat the checks made before (no ORM objects).
"""

from __future__ import annotations

import logging
from functools import cache

from sqlalchemy import Engine, bindparam, exists, not_, select, update
from sqlmodel import col

from manager.db import is_sqlite
from manager.dispatch import check_active, check_runner
from manager.errors import Conflict
from manager.fastsql import FastStatement, transaction
from manager.models import ApiKey, Job, Output, Runner, Task, TaskDependency, UTCDateTime, utcnow
from manager.states import JOB_RUNNABLE, check_job_transition, check_task_transition
from shared.wire import JobStatus, RunnerStatus, TaskStatus

log = logging.getLogger(__name__)


@cache
def completion_check() -> FastStatement:
    """The runner, and the task with its job's status: what completing it must check."""
    return FastStatement(
        select(
            col(Runner.api_key_id),
            col(Runner.name).label("runner_name"),
            col(Task.runner_id),
            col(Task.status).label("task_status"),
            col(Task.type),
            col(Task.name),
            col(Task.frames),
            col(Task.job_id),
            col(Job.status).label("job_status"),
        )
        .select_from(Runner)
        .outerjoin(Task, col(Task.id) == bindparam("task"))
        .outerjoin(Job, col(Job.id) == col(Task.job_id))
        .where(col(Runner.id) == bindparam("runner"))
    )


@cache
def _delivered_frames() -> FastStatement:
    return FastStatement(
        select(col(Output.frame)).where(
            col(Output.task_id) == bindparam("task"), col(Output.frame).is_not(None)
        )
    )


@cache
def _completion_statements() -> tuple[FastStatement, ...]:
    """Built once. The transitions they make are checked against the state machine here."""
    check_task_transition(TaskStatus.ACTIVE, TaskStatus.COMPLETED)
    check_job_transition(JobStatus.ACTIVE, JobStatus.COMPLETED)
    check_job_transition(JobStatus.QUEUED, JobStatus.COMPLETED)
    now = bindparam("now", type_=UTCDateTime())
    going = select(col(Job.id)).where(col(Job.status).in_([s.value for s in JOB_RUNNABLE]))
    finish = (
        update(Task)
        .where(
            col(Task.id) == bindparam("task"),
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
            col(Task.job_id).in_(going),
        )
        .values(
            status=TaskStatus.COMPLETED.value,
            frames_done=bindparam("frames_done"),
            activity="completed",
            lease_expires_at=None,
            updated_at=now,
            finished_at=now,
        )
    )
    unfinished = exists().where(
        col(Task.job_id) == col(Job.id), col(Task.status) != TaskStatus.COMPLETED.value
    )
    settle = (
        update(Job)
        .where(
            col(Job.id) == bindparam("job"),
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
            not_(unfinished),
        )
        .values(
            status=JobStatus.COMPLETED.value,
            activity="all tasks completed",
            updated_at=now,
            finished_at=now,
        )
    )
    idle = (
        update(Runner)
        .where(col(Runner.id) == bindparam("runner"))
        .values(status=RunnerStatus.IDLE.value, last_seen_at=now)
    )  # (its leases: the runner's heartbeats extend them)
    # Dependents whose last pending dependency this was (the count is kept by triggers).
    unblocked = (
        select(col(TaskDependency.task_id))
        .join(Task, col(Task.id) == col(TaskDependency.task_id))
        .where(
            col(TaskDependency.depends_on_id) == bindparam("task"),
            col(Task.pending_dependencies) == 0,
        )
    )
    lock_job = update(Job).where(col(Job.id) == bindparam("job")).values(updated_at=now)
    return tuple(FastStatement(s) for s in (lock_job, finish, settle, idle, unblocked))


def finish_task(
    engine: Engine,
    write_engine: Engine,
    runner_id: int,
    key: ApiKey,
    task_id: int,
) -> list[int]:
    """Complete the runner's task; returns the tasks that made runnable.

    Checked by a read first (for a clear error), then written by a few statements whose own
    conditions repeat the checks, so the write transaction holds SQLite's lock briefly.
    """
    with transaction(engine) as conn:
        row = conn.first(completion_check(), {"runner": runner_id, "task": task_id})
        check_runner(runner_id, row is not None, row[0] if row else None, key)
        assert row is not None
        _, runner_name, task_runner_id, task_status, type_, name, frames, job_id, job_status = row
        check_active(task_id, runner_id, runner_name, task_runner_id, task_status, job_status)
        if type_ == "blender":
            delivered = {frame for (frame,) in conn.all(_delivered_frames(), {"task": task_id})}
            missing = [frame for frame in frames if frame not in delivered]
            if missing:
                raise Conflict(
                    f"task {name} cannot complete: frames {missing} were never uploaded",
                    code="outputs_missing",
                )
    lock_job, finish, settle, idle, unblocked = _completion_statements()
    now = utcnow()
    params = {
        "task": task_id,
        "runner": runner_id,
        "job": job_id,
        "frames_done": len(frames),
        "now": now,
    }
    with transaction(write_engine, write=True) as conn:
        if not is_sqlite(write_engine):  # (SQLite's write lock already serialises everything)
            # Take the job's row first: two runners finishing the last two tasks would
            # otherwise each see the other's task unfinished, and the job never complete.
            conn.rowcount(lock_job, params)
        if conn.rowcount(finish, params) != 1:
            changed = f"task {task_id} changed while it was being completed; stop working on it"
            raise Conflict(changed, code="task_not_active")
        if conn.rowcount(settle, params):
            log.info("job %s completed", job_id)
        conn.rowcount(idle, params)
        return [task for (task,) in conn.all(unblocked, params)]
