"""Claiming: which task a runner gets next. One function, one atomic statement."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, exists, not_, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import col

from manager.db import BEGIN_MODE, is_sqlite
from manager.models import (
    Job,
    JobBlocklist,
    JobPin,
    Runner,
    Task,
    TaskDependency,
    TaskFailure,
    utcnow,
)
from manager.states import JOB_RUNNABLE, TASK_RUNNABLE
from shared.wire import JobStatus, TaskStatus

log = logging.getLogger(__name__)


def runnable_tasks_for(runner: Runner):  # type: ignore[no-untyped-def]
    """SELECT of the ids of tasks ``runner`` may take, best first (shared with diagnostics)."""
    upstream = aliased(Task)
    waiting_on_dependency = exists().where(
        col(TaskDependency.task_id) == col(Task.id),
        col(TaskDependency.depends_on_id) == col(upstream.id),
        col(upstream.status) != TaskStatus.COMPLETED.value,
    )
    blocklisted = exists().where(
        col(JobBlocklist.job_id) == col(Task.job_id), col(JobBlocklist.runner_id) == runner.id
    )
    failed_here = exists().where(
        col(TaskFailure.task_id) == col(Task.id), col(TaskFailure.runner_id) == runner.id
    )
    pinned = exists().where(col(JobPin.job_id) == col(Job.id))
    pinned_here = exists().where(
        col(JobPin.job_id) == col(Job.id), col(JobPin.runner_name) == runner.name
    )
    tag_matches = (
        or_(col(Job.tag).is_(None), col(Job.tag).in_(runner.tags))
        if runner.tags
        else col(Job.tag).is_(None)
    )
    return (
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
            col(Task.type).in_(runner.task_types),
            tag_matches,
            or_(not_(pinned), pinned_here),
            not_(waiting_on_dependency),
            not_(blocklisted),
            not_(failed_here),
        )
        .order_by(col(Job.priority).desc(), col(Job.id), col(Task.task_order), col(Task.id))
    )


def claim_next_task(
    engine: Engine, runner: Runner, *, lease_seconds: float, now: datetime | None = None
) -> int | None:
    """Atomically give the best runnable task to ``runner``; return its id or None.

    One ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING`` in a write transaction:
    ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two runners
    never get the same task and neither waits on the other's row.
    """
    if not runner.enabled:
        return None
    now = now or utcnow()
    candidate = (
        runnable_tasks_for(runner)
        .limit(1)
        .with_for_update(skip_locked=True, of=Task)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    claim = (
        update(Task)
        .where(
            and_(
                col(Task.id) == candidate,
                # Re-checked by the UPDATE itself: on PostgreSQL a row can change between
                # the subquery's snapshot and the lock.
                col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            )
        )
        .values(
            status=TaskStatus.ACTIVE.value,
            runner_id=runner.id,
            attempts=Task.attempts + 1,  # type: ignore[operator]
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            last_progress_at=now,
            updated_at=now,
            frames_done=0,
            activity=f"claimed by {runner.name}",
        )
        .returning(col(Task.id), col(Task.job_id))
    )
    with engine.connect() as conn:
        if is_sqlite(engine):
            conn = conn.execution_options(**{BEGIN_MODE: "IMMEDIATE"})
        with conn.begin():
            row = conn.execute(claim).first()
            if row is None:
                return None
            task_id, job_id = row
            conn.execute(
                update(Job)
                .where(col(Job.id) == job_id, col(Job.status) == JobStatus.QUEUED.value)
                .values(
                    status=JobStatus.ACTIVE.value,
                    started_at=now,
                    updated_at=now,
                    activity="rendering",
                )
            )
    assert task_id is not None
    return int(task_id)
