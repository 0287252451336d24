"""Run a job type's ``compile_job`` and turn what it authored into task rows."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from manager.errors import InvalidInput
from manager.job_types.authoring import AuthoredJob, JobTypeError, ordered_tasks
from manager.job_types.registry import JobType
from manager.models import Job, Task, TaskDependency

MAX_TASKS = 100_000


def author_tasks(
    job_type: JobType, *, name: str, settings: dict[str, Any], metadata: dict[str, Any]
) -> AuthoredJob:
    """Compile in memory; any error is a 422 with the job type's own message."""
    authored = AuthoredJob(name=name, settings=dict(settings), metadata=dict(metadata))
    try:
        job_type.compile_job(authored)
        ordered_tasks(authored)
    except JobTypeError as exc:
        raise InvalidInput(f"job type {job_type.name}: {exc}", code="compile_failed") from exc
    except Exception as exc:  # the job type's own code: report, never 500
        raise InvalidInput(
            f"job type {job_type.name} could not compile this job: {type(exc).__name__}: {exc}",
            code="compile_failed",
        ) from exc
    if not authored.tasks:
        raise InvalidInput(f"job type {job_type.name} made no tasks", code="compile_failed")
    if len(authored.tasks) > MAX_TASKS:
        raise InvalidInput(
            f"the job would have {len(authored.tasks)} tasks (limit {MAX_TASKS}); "
            "use a larger chunk size or split the job",
            code="too_many_tasks",
        )
    return authored


def store_tasks(session: Session, job: Job, authored: AuthoredJob) -> list[Task]:
    assert job.id is not None
    rows = [
        Task(
            job_id=job.id,
            name=task.name,
            type=task.type,
            task_order=order,
            frames=task.frames,
            capability=task.capability,
            commands=[command.as_dict() for command in task.commands],
        )
        for order, task in enumerate(authored.tasks)
    ]
    session.add_all(rows)
    session.flush()
    ids: dict[int, int] = {}
    for task, row in zip(authored.tasks, rows, strict=True):
        assert row.id is not None
        ids[id(task)] = row.id
    for task in authored.tasks:
        for dependency in task.dependencies:
            session.add(TaskDependency(task_id=ids[id(task)], depends_on_id=ids[id(dependency)]))
    return rows
