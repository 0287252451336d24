"""Reading jobs and tasks back in their public shape."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session, col

from manager.errors import NotFound
from manager.models import (
    Job,
    JobBlocklist,
    JobPin,
    Output,
    Runner,
    Task,
    TaskDependency,
    User,
)
from manager.schemas import BlocklistEntry, JobPublic, JobStatusPublic, TaskCounts, TaskPublic
from manager.storage import Storage, safe_relative_path
from shared.wire import JOB_FINISHED, JobStatus, TaskStatus


def get_job_for(session: Session, job_id: int, user: User) -> Job:
    """The job, if ``user`` may see it (its owner or an admin); 404 otherwise."""
    job = session.get(Job, job_id)
    if job is None or (not user.is_admin and job.owner_id != user.id):
        raise NotFound(f"there is no job {job_id}", code="job_not_found")
    return job


def stored_output(
    session: Session, storage: Storage, job_id: int, name: str
) -> tuple[Output, Path] | None:
    """A job's output by its name (checked to stay inside the job) and its file, if both exist."""
    clean = safe_relative_path(name)
    output = session.scalars(
        select(Output).where(col(Output.job_id) == job_id, col(Output.name) == clean)
    ).first()
    path = storage.output_path(job_id, clean)
    if output is None or not path.is_file():
        return None
    return output, path


def task_counts(session: Session, job_id: int) -> tuple[TaskCounts, int]:
    rows = session.execute(
        select(col(Task.status), func.count(), func.sum(col(Task.frames_done)))
        .where(col(Task.job_id) == job_id)
        .group_by(Task.status)
    ).all()
    by_status: Counter[str] = Counter()
    frames_done = 0
    for status, count, done in rows:
        by_status[status] = count
        frames_done += int(done or 0)
    return counts_by_status(by_status), frames_done


def counts_by_status(by_status: Counter[str]) -> TaskCounts:
    """A job's task counts from how many of its tasks are in each status."""
    return TaskCounts(
        total=sum(by_status.values()),
        queued=by_status[TaskStatus.QUEUED]
        + by_status[TaskStatus.SOFT_FAILED]
        + by_status[TaskStatus.PAUSED],
        active=by_status[TaskStatus.ACTIVE],
        completed=by_status[TaskStatus.COMPLETED],
        failed=by_status[TaskStatus.FAILED],
        canceled=by_status[TaskStatus.CANCELED],
    )


def job_public(session: Session, job: Job) -> JobPublic:
    counts, frames_done = task_counts(session, job.id or 0)
    pins = session.scalars(
        select(col(JobPin.runner_name)).where(col(JobPin.job_id) == job.id)
    ).all()
    blocked = session.execute(
        select(col(Runner.name), col(JobBlocklist.reason))
        .join(Runner, col(Runner.id) == col(JobBlocklist.runner_id))
        .where(col(JobBlocklist.job_id) == job.id)
    ).all()
    return JobPublic(
        **job.model_dump(exclude={"settings"}),
        settings=dict(job.settings),
        frames_done=frames_done,
        tasks=counts,
        runners=list(pins),
        blocklist=[BlocklistEntry(runner=name, reason=reason) for name, reason in blocked],
    )


def task_public(session: Session, task: Task) -> TaskPublic:
    depends_on = session.scalars(
        select(col(TaskDependency.depends_on_id)).where(col(TaskDependency.task_id) == task.id)
    ).all()
    return TaskPublic.model_validate({**task.model_dump(), "depends_on": list(depends_on)})


def job_status_public(session: Session, job: Job) -> JobStatusPublic:
    _, frames_done = task_counts(session, job.id or 0)
    return JobStatusPublic(
        id=job.id or 0,
        status=job.status,
        finished=job.status in JOB_FINISHED,
        succeeded=job.status == JobStatus.COMPLETED,
        frames_done=frames_done,
        frame_count=job.frame_count,
        failure_reason=job.failure_reason,
    )
