"""Completing a task: checked by a read, written by a few statements in a short transaction.

On SQLite every write waits for the one write lock, so what happens while holding it is kept
to plain statements whose own conditions repeat the checks made before (no ORM objects).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine, Select, bindparam, exists, func, not_, select, update
from sqlmodel import col

from manager.db import is_sqlite
from manager.dispatch import check_active, check_runner
from manager.errors import Conflict
from manager.fastsql import FastConnection, FastStatement, transaction
from manager.models import ApiKey, Job, Output, Runner, Task, TaskDependency, UTCDateTime, utcnow
from manager.scheduler import ClaimingRunner
from manager.states import JOB_RUNNABLE, check_job_transition, check_task_transition
from shared.wire import JobStatus, RunnerStatus, TaskStatus

log = logging.getLogger(__name__)


def _check(job: Any) -> Select[Any]:
    """The runner, and the task with its job's status (from ``job``, the jobs table or a
    CTE of its rows): what completing it must check; then the runner as it claims."""
    return (
        select(
            col(Runner.api_key_id),
            col(Runner.name).label("runner_name"),
            col(Task.runner_id),
            col(Task.status).label("task_status"),
            col(Task.type),
            col(Task.name),
            col(Task.frames),
            col(Task.job_id),
            job.c.status.label("job_status"),
            *(col(getattr(Runner, field.name)) for field in fields(ClaimingRunner)),
        )
        .select_from(Runner)
        .outerjoin(Task, col(Task.id) == bindparam("task"))
        .outerjoin(job, job.c.id == col(Task.job_id))
        .where(col(Runner.id) == bindparam("runner"))
    )


CHECKED = 9
"""The columns of the check before the runner's."""


@cache
def completion_check() -> FastStatement:
    """What completing a task must check (see ``_check``)."""
    return FastStatement(_check(Job.__table__))  # type: ignore[attr-defined]


@cache
def _delivered_frames() -> FastStatement:
    return FastStatement(
        select(col(Output.frame)).where(
            col(Output.task_id) == bindparam("task"), col(Output.frame).is_not(None)
        )
    )


@cache
def _completion_statements() -> tuple[FastStatement, ...]:
    """SQLite's completion: the task finished, its job settled, its runner idle, and the
    dependents it made runnable."""
    return tuple(FastStatement(s) for s in _completion_sql())


def _completion_sql() -> tuple[Any, ...]:
    """The transitions these make are checked against the state machine here."""
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
    return finish, settle, idle, unblocked


@cache
def _postgres_completion() -> tuple[FastStatement, FastStatement]:
    """PostgreSQL's completion, in two statements of one transaction: the job's row locked
    with the check read, then the task finished, the job settled if that was its last task,
    the runner marked idle and the dependents made runnable listed, as data-modifying CTEs.
    The second statement's snapshot is taken once the lock is held, so it sees every other
    completion of the job committed before; the task it finishes itself it does not see
    finished, nor its dependents' counts lowered (by the trigger): the job is settled if no
    other task is unfinished, and a dependent is unblocked whose count was one."""
    finish, _, idle, _ = _completion_sql()
    now = bindparam("now", type_=UTCDateTime())
    of_task = select(col(Task.job_id)).where(col(Task.id) == bindparam("task")).scalar_subquery()
    locked = (
        update(Job)
        .where(col(Job.id) == of_task)
        .values(updated_at=now)
        .returning(col(Job.id), col(Job.status))
        .cte("locked")
    )
    finished = finish.returning(col(Task.id)).cte("finished")
    others_unfinished = exists().where(
        col(Task.job_id) == bindparam("job"),
        col(Task.status) != TaskStatus.COMPLETED.value,
        col(Task.id) != bindparam("task"),
    )
    settled = (
        update(Job)
        .where(
            col(Job.id) == bindparam("job"),
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
            exists(select(finished.c.id)),
            not_(others_unfinished),
        )
        .values(
            status=JobStatus.COMPLETED.value,
            activity="all tasks completed",
            updated_at=now,
            finished_at=now,
        )
        .returning(col(Job.id))
        .cte("settled")
    )
    idled = idle.returning(col(Runner.id)).cte("idled")
    unblocked = (
        select(func.array_agg(col(TaskDependency.task_id)))
        .join(Task, col(Task.id) == col(TaskDependency.task_id))
        .where(
            col(TaskDependency.depends_on_id) == bindparam("task"),
            col(Task.pending_dependencies) == 1,
            exists(select(finished.c.id)),
        )
        .scalar_subquery()
    )
    finish_all = select(
        select(func.count()).select_from(finished).scalar_subquery(),
        select(func.count()).select_from(settled).scalar_subquery(),
        unblocked,
    ).add_cte(idled)
    return FastStatement(_check(locked)), FastStatement(finish_all)


@dataclass(frozen=True)
class Finished:
    """A completion: the tasks it made runnable, and its runner as it is now (idle, seen at
    the completion), for the claim that may follow in the same request."""

    unblocked: list[int]
    runner: ClaimingRunner


def _checked(
    row: tuple[Any, ...] | None, runner_id: int, key: ApiKey, task_id: int, now: datetime
) -> tuple[str, str, list[int], int, ClaimingRunner]:
    """The check's row checked: the task's type, name, frames and job, and the runner idle."""
    check_runner(runner_id, row is not None, row[0] if row else None, key)
    assert row is not None
    _, runner_name, task_runner_id, task_status, type_, name, frames, job_id, job_status = row[
        :CHECKED
    ]
    check_active(task_id, runner_id, runner_name, task_runner_id, task_status, job_status)
    runner = ClaimingRunner(*row[CHECKED:])
    return type_, name, frames, job_id, replace(runner, status=RunnerStatus.IDLE, last_seen_at=now)


def _check_delivered(conn: FastConnection, task_id: int, name: str, frames: list[int]) -> None:
    """A render task completes only with every frame uploaded."""
    delivered = {frame for (frame,) in conn.all(_delivered_frames(), {"task": task_id})}
    missing = [frame for frame in frames if frame not in delivered]
    if missing:
        raise Conflict(
            f"task {name} cannot complete: frames {missing} were never uploaded",
            code="outputs_missing",
        )


CHANGED = "task {} changed while it was being completed; stop working on it"


def finish_task(
    engine: Engine,
    write_engine: Engine,
    runner_id: int,
    key: ApiKey,
    task_id: int,
) -> Finished:
    """Complete the runner's task.

    On SQLite checked by a read first (for a clear error), then written by a few statements
    whose own conditions repeat the checks, so the write transaction holds SQLite's lock
    briefly; on PostgreSQL in two statements (``_postgres_completion``).
    """
    now = utcnow()
    if not is_sqlite(write_engine):
        return _finish_on_postgresql(write_engine, runner_id, key, task_id, now)
    with transaction(engine) as conn:
        row = conn.first(completion_check(), {"runner": runner_id, "task": task_id})
        type_, name, frames, job_id, runner = _checked(row, runner_id, key, task_id, now)
        if type_ == "blender":
            _check_delivered(conn, task_id, name, frames)
    finish, settle, idle, unblocked = _completion_statements()
    params = {
        "task": task_id,
        "runner": runner_id,
        "job": job_id,
        "frames_done": len(frames),
        "now": now,
    }
    with transaction(write_engine, write=True) as conn:
        if conn.rowcount(finish, params) != 1:
            raise Conflict(CHANGED.format(task_id), code="task_not_active")
        if conn.rowcount(settle, params):
            log.info("job %s completed", job_id)
        conn.rowcount(idle, params)
        made_runnable = [task for (task,) in conn.all(unblocked, params)]
    return Finished(made_runnable, runner)


def _finish_on_postgresql(
    engine: Engine, runner_id: int, key: ApiKey, task_id: int, now: datetime
) -> Finished:
    lock_and_check, finish_all = _postgres_completion()
    params: dict[str, Any] = {"task": task_id, "runner": runner_id, "now": now}
    with transaction(engine, write=True) as conn:
        # The job's row first: two runners finishing the last two tasks would otherwise each
        # see the other's task unfinished, and the job never complete.
        row = conn.first(lock_and_check, params)
        type_, name, frames, job_id, runner = _checked(row, runner_id, key, task_id, now)
        if type_ == "blender":
            _check_delivered(conn, task_id, name, frames)
        params.update(job=job_id, frames_done=len(frames))
        result = conn.first(finish_all, params)
        assert result is not None
        finished, settled, made_runnable = result
        if finished != 1:
            raise Conflict(CHANGED.format(task_id), code="task_not_active")
    if settled:
        log.info("job %s completed", job_id)
    return Finished(list(made_runnable or []), runner)
