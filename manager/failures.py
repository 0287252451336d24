"""The failure policy: soft-fail, fail, blocklist, and fail the job.

- A task a runner failed becomes soft-failed and goes to another runner; once
  ``task-fail-threshold`` different runners failed it, it fails.
- A runner that failed ``blocklist-threshold`` tasks of one job gets no more of that job.
- A job fails when at least ``job-fail-ratio`` of its tasks failed, or when a task is left
  that no capable runner may take any more.
Each decision is written down as the task's or job's ``activity`` / ``failure_reason``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import distinct, func, select
from sqlmodel import Session, col

from manager.farm_settings import get_setting
from manager.job_control import (
    cancel_unfinished_tasks,
    set_job_status,
    set_task_status,
    settle_job,
    tasks_of,
)
from manager.models import Job, JobBlocklist, JobPin, Runner, Task, TaskFailure, utcnow
from manager.states import TASK_RUNNABLE
from shared.wire import JOB_FINISHED, JobStatus, TaskStatus

log = logging.getLogger(__name__)


def fail_task(
    session: Session,
    task: Task,
    job: Job,
    runner: Runner | None,
    reason: str,
    *,
    now: datetime | None = None,
) -> None:
    """Record a failed attempt of ``task`` on ``runner`` and apply the policy."""
    now = now or utcnow()
    assert task.id is not None and job.id is not None
    session.add(
        TaskFailure(
            task_id=task.id,
            job_id=job.id,
            runner_id=runner.id if runner else None,
            reason=reason,
            created_at=now,
        )
    )
    session.flush()
    failed_by = (
        session.scalar(
            select(func.count(distinct(col(TaskFailure.runner_id)))).where(
                col(TaskFailure.task_id) == task.id
            )
        )
        or 0
    )
    threshold = int(get_setting(session, "task-fail-threshold"))
    who = runner.name if runner else "the manager"
    if failed_by >= threshold:
        set_task_status(task, TaskStatus.FAILED, activity=f"failed on {failed_by} runners", now=now)
        task.failure_reason = f"failed on {failed_by} different runners; last on {who}: {reason}"
    else:
        set_task_status(
            task,
            TaskStatus.SOFT_FAILED,
            activity=f"failed on {who}; another runner will try ({failed_by}/{threshold})",
            now=now,
        )
        task.failure_reason = f"on {who}: {reason}"
    session.add(task)
    if runner is not None:
        _maybe_blocklist(session, job, runner, now=now)
    _maybe_fail_job(session, job, now=now)
    settle_job(session, job)


def _maybe_blocklist(session: Session, job: Job, runner: Runner, *, now: datetime) -> None:
    failures = (
        session.scalar(
            select(func.count())
            .select_from(TaskFailure)
            .where(col(TaskFailure.job_id) == job.id, col(TaskFailure.runner_id) == runner.id)
        )
        or 0
    )
    threshold = int(get_setting(session, "blocklist-threshold"))
    assert job.id is not None and runner.id is not None
    if failures >= threshold and session.get(JobBlocklist, (job.id, runner.id)) is None:
        session.add(
            JobBlocklist(
                job_id=job.id,
                runner_id=runner.id,
                created_at=now,
                reason=f"{runner.name} failed {failures} tasks of this job",
            )
        )
        log.warning(
            "runner %s blocklisted for job %s after %s failures", runner.name, job.id, failures
        )
        session.flush()


def _maybe_fail_job(session: Session, job: Job, *, now: datetime) -> None:
    if job.status in JOB_FINISHED or job.status == JobStatus.CANCEL_REQUESTED:
        return
    tasks = tasks_of(session, job)
    failed = [t for t in tasks if t.status == TaskStatus.FAILED]
    ratio = float(get_setting(session, "job-fail-ratio"))
    if failed and len(failed) >= ratio * len(tasks):
        _fail_job(
            session,
            job,
            f"{len(failed)} of {len(tasks)} tasks failed (limit {ratio:.0%}); "
            f"first: {failed[0].name}: {failed[0].failure_reason}",
            now=now,
        )
        return
    stuck = next(
        (t for t in tasks if t.status in TASK_RUNNABLE and not capable_runners(session, job, t)),
        None,
    )
    if stuck is not None:
        _fail_job(
            session,
            job,
            f"no runner is left that may run task {stuck.name}: every capable runner failed it "
            f"or is blocklisted for this job; last failure: {stuck.failure_reason}",
            now=now,
        )


def _fail_job(session: Session, job: Job, reason: str, *, now: datetime) -> None:
    set_job_status(job, JobStatus.FAILED, activity="failed", now=now)
    job.failure_reason = reason
    session.add(job)
    cancel_unfinished_tasks(session, job, reason="the job failed")
    log.warning("job %s failed: %s", job.id, reason)


def capable_runners(session: Session, job: Job, task: Task) -> list[Runner]:
    """Enabled runners that could take ``task`` now or later, ignoring whether they are busy."""
    pins = set(
        session.scalars(select(col(JobPin.runner_name)).where(col(JobPin.job_id) == job.id)).all()
    )
    failed = set(
        session.scalars(
            select(col(TaskFailure.runner_id)).where(col(TaskFailure.task_id) == task.id)
        ).all()
    )
    blocked = set(
        session.scalars(
            select(col(JobBlocklist.runner_id)).where(col(JobBlocklist.job_id) == job.id)
        ).all()
    )
    runners = session.scalars(select(Runner).where(col(Runner.enabled).is_(True))).all()
    return [
        r
        for r in runners
        if task.type in r.task_types
        and (task.capability is None or task.capability in r.capabilities)
        and (job.tag is None or job.tag in r.tags)
        and (not pins or r.name in pins)
        and r.id not in failed
        and r.id not in blocked
    ]
