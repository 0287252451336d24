"""Reading jobs and tasks back in their public shape."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
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
    return jobs_public(session, [job])[0]


def jobs_public(session: Session, jobs: Sequence[Job]) -> list[JobPublic]:
    """Jobs in their public shape: a few queries for all of them, not a few per job."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    frames_done: Counter[int] = Counter()
    pins: dict[int, list[str]] = defaultdict(list)
    blocked: dict[int, list[BlocklistEntry]] = defaultdict(list)
    for ids in _batches([job.id for job in jobs if job.id is not None]):
        for job_id, status, count, done in session.execute(
            select(col(Task.job_id), col(Task.status), func.count(), func.sum(Task.frames_done))
            .where(col(Task.job_id).in_(ids))
            .group_by(col(Task.job_id), col(Task.status))
        ):
            counts[job_id][status] = count
            frames_done[job_id] += int(done or 0)
        for job_id, name in session.execute(
            select(col(JobPin.job_id), col(JobPin.runner_name)).where(col(JobPin.job_id).in_(ids))
        ):
            pins[job_id].append(name)
        for job_id, name, reason in session.execute(
            select(col(JobBlocklist.job_id), col(Runner.name), col(JobBlocklist.reason))
            .join(Runner, col(Runner.id) == col(JobBlocklist.runner_id))
            .where(col(JobBlocklist.job_id).in_(ids))
        ):
            blocked[job_id].append(BlocklistEntry(runner=name, reason=reason))
    return [
        JobPublic(
            **job.model_dump(exclude={"settings"}),
            settings=dict(job.settings),
            frames_done=frames_done[job.id or 0],
            tasks=counts_by_status(counts[job.id or 0]),
            runners=pins[job.id or 0],
            blocklist=blocked[job.id or 0],
        )
        for job in jobs
    ]


def task_public(session: Session, task: Task) -> TaskPublic:
    return tasks_public(session, [task])[0]


def tasks_public(session: Session, tasks: Sequence[Task]) -> list[TaskPublic]:
    """Tasks in their public shape, with their dependencies read in a few queries."""
    depends_on: dict[int, list[int]] = defaultdict(list)
    for ids in _batches([task.id for task in tasks if task.id is not None]):
        for task_id, dependency in session.execute(
            select(col(TaskDependency.task_id), col(TaskDependency.depends_on_id))
            .where(col(TaskDependency.task_id).in_(ids))
            .order_by(col(TaskDependency.depends_on_id))
        ):
            depends_on[task_id].append(dependency)
    return [
        TaskPublic.model_validate({**task.model_dump(), "depends_on": depends_on[task.id or 0]})
        for task in tasks
    ]


def _batches(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in groups small enough for any database's limit on bound values."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


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
