"""Who renders what: claiming tasks, task reports, and the job status that follows from them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlmodel import Session, col

from manager.db import BEGIN_MODE, is_sqlite
from manager.models import Job, Runner, Task, utcnow
from manager.states import (
    JOB_RUNNABLE,
    TASK_RUNNABLE,
    TASK_UNFINISHED,
    check_job_transition,
    check_task_transition,
)
from shared.wire import JOB_FINISHED, JobStatus, TaskStatus

log = logging.getLogger(__name__)


def claim_next_task(engine: Engine, runner: Runner, *, lease_seconds: float) -> int | None:
    """Atomically give the best runnable task to ``runner``; return its id or None.

    One UPDATE … WHERE id = (SELECT … LIMIT 1) in a write transaction: ``BEGIN IMMEDIATE`` on
    SQLite, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two runners never get the same task.
    """
    now = utcnow()
    candidate = (
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
            col(Task.type).in_(runner.task_types),
        )
        .order_by(col(Job.priority).desc(), col(Job.id), col(Task.task_order))
        .limit(1)
        .with_for_update(skip_locked=True, of=Task)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    claim = (
        update(Task)
        .where(col(Task.id) == candidate)
        .values(
            status=TaskStatus.ACTIVE.value,
            runner_id=runner.id,
            attempts=Task.attempts + 1,  # type: ignore[operator]
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            updated_at=now,
            frames_done=0,
            activity="claimed",
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
                .values(status=JobStatus.ACTIVE.value, started_at=now, updated_at=now)
            )
    assert task_id is not None
    return int(task_id)


def set_task_status(task: Task, status: TaskStatus, *, reason: str | None = None) -> None:
    task.status = check_task_transition(task.status, status)
    task.updated_at = utcnow()
    if status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED):
        task.finished_at = task.updated_at
        task.lease_expires_at = None
    if status in (TaskStatus.QUEUED, TaskStatus.SOFT_FAILED):
        task.runner_id = None
        task.lease_expires_at = None
    if reason is not None:
        task.failure_reason = reason


def set_job_status(job: Job, status: JobStatus, *, reason: str | None = None) -> None:
    job.status = check_job_transition(job.status, status)
    job.updated_at = utcnow()
    if status in JOB_FINISHED:
        job.finished_at = job.updated_at
    if reason is not None:
        job.failure_reason = reason


def complete_task(session: Session, task: Task, job: Job) -> None:
    set_task_status(task, TaskStatus.COMPLETED)
    task.frames_done = len(task.frames)
    task.activity = "completed"
    session.add(task)
    session.flush()
    unfinished = session.scalar(
        select(func.count())
        .select_from(Task)
        .where(col(Task.job_id) == job.id, col(Task.status) != TaskStatus.COMPLETED.value)
    )
    if unfinished == 0 and job.status == JobStatus.ACTIVE:
        set_job_status(job, JobStatus.COMPLETED)
        session.add(job)
        log.info("job %s completed", job.id)


def fail_task(session: Session, task: Task, job: Job, reason: str, *, max_attempts: int) -> None:
    """A failed attempt: retried elsewhere until ``max_attempts``, then the job fails."""
    if task.attempts < max_attempts:
        set_task_status(task, TaskStatus.SOFT_FAILED, reason=reason)
        task.activity = f"attempt {task.attempts} failed; will retry"
        session.add(task)
        return
    set_task_status(task, TaskStatus.FAILED, reason=reason)
    task.activity = "failed"
    session.add(task)
    if job.status in JOB_FINISHED:
        return
    set_job_status(
        job,
        JobStatus.FAILED,
        reason=f"task {task.name} failed after {task.attempts} attempts: {reason}",
    )
    session.add(job)
    cancel_unfinished_tasks(session, job, exclude=task.id)
    log.warning("job %s failed: %s", job.id, job.failure_reason)


def cancel_unfinished_tasks(session: Session, job: Job, *, exclude: int | None = None) -> None:
    tasks = session.scalars(
        select(Task).where(
            col(Task.job_id) == job.id,
            col(Task.status).in_([s.value for s in TASK_UNFINISHED]),
        )
    ).all()
    for task in tasks:
        if task.id != exclude:
            set_task_status(task, TaskStatus.CANCELED)
            task.activity = "canceled"
            session.add(task)


def cancel_job(session: Session, job: Job) -> None:
    set_job_status(job, JobStatus.CANCELED)
    session.add(job)
    cancel_unfinished_tasks(session, job)


def requeue_tasks_of_offline_runners(session: Session, *, timeout: float) -> list[int]:
    """Mark silent runners offline, hand their tasks back; also requeue expired leases."""
    now = utcnow()
    cutoff = now - timedelta(seconds=timeout)
    silent = session.scalars(
        select(Runner).where(col(Runner.status) != "offline", col(Runner.last_seen_at) < cutoff)
    ).all()
    for runner in silent:
        runner.status = "offline"
        session.add(runner)
        log.warning("runner %s is offline (silent since %s)", runner.name, runner.last_seen_at)
    expired = session.scalars(
        select(Task).where(
            col(Task.status) == TaskStatus.ACTIVE.value, col(Task.lease_expires_at) < now
        )
    ).all()
    requeued = []
    for task in expired:
        release_task(task, reason="the runner stopped reporting")
        session.add(task)
        requeued.append(task.id)
    return [t for t in requeued if t is not None]


def release_task(task: Task, *, reason: str) -> None:
    """Put an active task back in the queue without counting it as a failed attempt."""
    set_task_status(task, TaskStatus.QUEUED)
    task.attempts = max(0, task.attempts - 1)
    task.activity = f"requeued: {reason}"


def extend_leases(session: Session, runner: Runner, *, lease_seconds: float) -> None:
    session.execute(
        update(Task)
        .where(col(Task.runner_id) == runner.id, col(Task.status) == TaskStatus.ACTIVE.value)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )


def lease_deadline(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
