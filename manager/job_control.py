"""Everything that changes a job or task's status, and the job status that follows.

Callers pass an open session and commit; every status change goes through
``set_task_status`` / ``set_job_status`` and so through the state machine.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from manager.errors import Conflict, InvalidInput
from manager.models import Job, JobBlocklist, JobPin, Task, TaskFailure, utcnow
from manager.states import (
    TASK_FINISHED,
    TASK_RUNNABLE,
    TASK_UNFINISHED,
    check_job_transition,
    check_task_transition,
)
from shared.wire import JOB_FINISHED, JobStatus, TaskStatus

log = logging.getLogger(__name__)


def set_task_status(
    task: Task, status: TaskStatus, *, activity: str | None = None, now: datetime | None = None
) -> None:
    task.status = check_task_transition(task.status, status)
    task.updated_at = now or utcnow()
    if status in TASK_FINISHED:
        task.finished_at = task.updated_at
    if status is not TaskStatus.ACTIVE:
        task.lease_expires_at = None
    if status in TASK_RUNNABLE or status is TaskStatus.PAUSED:
        task.runner_id = None
    if activity is not None:
        task.activity = activity[:500]


def set_job_status(
    job: Job, status: JobStatus, *, activity: str | None = None, now: datetime | None = None
) -> None:
    job.status = check_job_transition(job.status, status)
    job.updated_at = now or utcnow()
    if status in JOB_FINISHED:
        job.finished_at = job.updated_at
    if activity is not None:
        job.activity = activity[:500]


def tasks_of(
    session: Session, job: Job, statuses: frozenset[TaskStatus] | None = None
) -> list[Task]:
    query = select(Task).where(col(Task.job_id) == job.id)
    if statuses is not None:
        query = query.where(col(Task.status).in_([s.value for s in statuses]))
    return list(session.scalars(query.order_by(col(Task.task_order))).all())


def settle_job(session: Session, job: Job) -> None:
    """Move a job on once its tasks allow it: to completed, paused or canceled."""
    session.flush()
    counts = dict(
        session.execute(
            select(col(Task.status), func.count())
            .where(col(Task.job_id) == job.id)
            .group_by(col(Task.status))
        ).all()
    )
    active = counts.get(TaskStatus.ACTIVE.value, 0)
    total = sum(counts.values())
    if job.status == JobStatus.CANCEL_REQUESTED and active == 0:
        set_job_status(job, JobStatus.CANCELED, activity="canceled")
    elif job.status == JobStatus.PAUSE_REQUESTED and active == 0:
        set_job_status(job, JobStatus.PAUSED, activity="paused")
    elif (
        job.status in (JobStatus.ACTIVE, JobStatus.QUEUED)
        and total > 0
        and counts.get(TaskStatus.COMPLETED.value, 0) == total
    ):
        set_job_status(job, JobStatus.COMPLETED, activity="all tasks completed")
        log.info("job %s completed", job.id)
    session.add(job)


# -- reports from runners ---------------------------------------------------------------


def complete_task(session: Session, task: Task, job: Job) -> None:
    set_task_status(task, TaskStatus.COMPLETED, activity="completed")
    task.frames_done = len(task.frames)
    session.add(task)
    settle_job(session, job)


def release_task(session: Session, task: Task, job: Job, *, reason: str) -> None:
    """An active task comes back unfinished, without counting as a failed attempt.

    It goes where its job is heading: canceled, paused, or back into the queue.
    """
    if job.status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELED, JobStatus.FAILED):
        set_task_status(task, TaskStatus.CANCELED, activity=f"canceled: {reason}")
    elif job.status in (JobStatus.PAUSE_REQUESTED, JobStatus.PAUSED):
        set_task_status(task, TaskStatus.PAUSED, activity=f"paused: {reason}")
    else:
        set_task_status(task, TaskStatus.QUEUED, activity=f"requeued: {reason}")
    task.attempts = max(0, task.attempts - 1)
    session.add(task)
    settle_job(session, job)


# -- job control from users ---------------------------------------------------------------


def cancel_job(session: Session, job: Job) -> None:
    if job.status in JOB_FINISHED:
        raise Conflict(f"job {job.id} is already {job.status}", code="job_finished")
    if job.status == JobStatus.CANCEL_REQUESTED:
        return
    cancel_unfinished_tasks(session, job, reason="the job was canceled")
    active = tasks_of(session, job, frozenset({TaskStatus.ACTIVE}))
    if active:
        set_job_status(
            job,
            JobStatus.CANCEL_REQUESTED,
            activity=f"canceling: waiting for {len(active)} runner(s) to stop",
        )
    else:
        set_job_status(job, JobStatus.CANCELED, activity="canceled")
    session.add(job)


def cancel_unfinished_tasks(
    session: Session, job: Job, *, reason: str, exclude: int | None = None
) -> None:
    """Cancel every task that is not running or finished (running ones stop at their report)."""
    waiting = TASK_UNFINISHED - {TaskStatus.ACTIVE}
    for task in tasks_of(session, job, frozenset(waiting)):
        if task.id != exclude:
            set_task_status(task, TaskStatus.CANCELED, activity=f"canceled: {reason}")
            session.add(task)


def pause_job(session: Session, job: Job) -> None:
    if job.status in (JobStatus.PAUSED, JobStatus.PAUSE_REQUESTED):
        return
    if job.status not in (JobStatus.QUEUED, JobStatus.ACTIVE):
        raise Conflict(f"a {job.status} job cannot be paused", code="illegal_transition")
    for task in tasks_of(session, job, TASK_RUNNABLE):
        set_task_status(task, TaskStatus.PAUSED, activity="paused with its job")
        session.add(task)
    active = tasks_of(session, job, frozenset({TaskStatus.ACTIVE}))
    if active:
        set_job_status(
            job,
            JobStatus.PAUSE_REQUESTED,
            activity=f"pausing: waiting for {len(active)} runner(s) to stop",
        )
    else:
        set_job_status(job, JobStatus.PAUSED, activity="paused")
    session.add(job)


def resume_job(session: Session, job: Job) -> None:
    if job.status not in (JobStatus.PAUSED, JobStatus.PAUSE_REQUESTED):
        raise Conflict(f"a {job.status} job is not paused", code="illegal_transition")
    for task in tasks_of(session, job, frozenset({TaskStatus.PAUSED})):
        set_task_status(task, TaskStatus.QUEUED, activity="resumed")
        session.add(task)
    has_active = bool(tasks_of(session, job, frozenset({TaskStatus.ACTIVE})))
    target = JobStatus.ACTIVE if has_active else JobStatus.QUEUED
    if job.status == JobStatus.PAUSED and target is JobStatus.ACTIVE:
        target = JobStatus.QUEUED
    set_job_status(job, target, activity="resumed")
    session.add(job)


def requeue_job(session: Session, job: Job, *, failed_only: bool) -> list[Task]:
    """Requeue the whole job, or only its failed and canceled tasks."""
    if job.status in (JobStatus.CANCEL_REQUESTED, JobStatus.PAUSE_REQUESTED):
        raise Conflict(
            f"job {job.id} is {job.status}; wait until its runners stopped", code="job_busy"
        )
    if not failed_only and job.status not in JOB_FINISHED | {JobStatus.PAUSED}:
        raise Conflict(
            f"job {job.id} is {job.status}; only a finished or paused job can be requeued "
            "whole (requeue its failed tasks instead)",
            code="illegal_transition",
        )
    if failed_only:
        wanted = frozenset({TaskStatus.FAILED, TaskStatus.CANCELED})
    else:
        wanted = frozenset(TaskStatus) - {TaskStatus.ACTIVE}
    tasks = tasks_of(session, job, wanted)
    if not tasks:
        raise Conflict(f"job {job.id} has no tasks to requeue", code="nothing_to_requeue")
    _requeue_tasks(session, job, tasks)
    if not failed_only:
        session.execute(delete(JobBlocklist).where(col(JobBlocklist.job_id) == job.id))
    return tasks


def requeue_task(session: Session, job: Job, task: Task) -> None:
    if task.status not in TASK_FINISHED | {TaskStatus.SOFT_FAILED}:
        raise Conflict(
            f"task {task.name} is {task.status}; it cannot be requeued", code="task_busy"
        )
    if job.status in (JobStatus.CANCEL_REQUESTED, JobStatus.PAUSE_REQUESTED):
        raise Conflict(f"job {job.id} is {job.status}", code="job_busy")
    _requeue_tasks(session, job, [task])


def _requeue_tasks(session: Session, job: Job, tasks: list[Task]) -> None:
    now = utcnow()
    for task in tasks:
        # Queued tasks of a paused job wait: claiming only looks at queued and active jobs.
        set_task_status(task, TaskStatus.QUEUED, activity="requeued", now=now)
        task.attempts = 0
        task.frames_done = 0
        task.failure_reason = None
        task.finished_at = None
        session.add(task)
    ids = [task.id for task in tasks]
    session.execute(delete(TaskFailure).where(col(TaskFailure.task_id).in_(ids)))
    if job.status in JOB_FINISHED:
        set_job_status(job, JobStatus.REQUEUEING, now=now)
        set_job_status(job, JobStatus.QUEUED, activity=f"requeued {len(tasks)} task(s)", now=now)
        job.finished_at = None
        job.failure_reason = None
    session.add(job)


def set_priority(job: Job, priority: int) -> None:
    if not 0 <= priority <= 100:
        raise InvalidInput("priority must be between 0 and 100", code="invalid_priority")
    job.priority = priority
    job.updated_at = utcnow()


def set_pins(session: Session, job: Job, runner_names: list[str]) -> None:
    """Pin the job to these runners (manual assignment); an empty list unpins it."""
    assert job.id is not None
    session.execute(delete(JobPin).where(col(JobPin.job_id) == job.id))
    for name in sorted({n.strip() for n in runner_names if n.strip()}):
        session.add(JobPin(job_id=job.id, runner_name=name))
    job.updated_at = utcnow()


def delete_job(session: Session, job: Job) -> None:
    """Remove the job's rows; runners still on it are told to stop at their next report."""
    session.delete(job)
    session.flush()
