"""Factories that put jobs, tasks and runners straight into a database, for scheduler tests."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session

from manager.models import Job, JobPin, Runner, Task, TaskDependency, User, utcnow
from shared.wire import TaskType


def make_user(session: Session, email: str = "artist@example.com") -> User:
    user = User(email=email, name=email.split("@")[0])
    session.add(user)
    session.flush()
    return user


def make_job(
    session: Session,
    *,
    tasks: int = 3,
    priority: int = 50,
    tag: str | None = None,
    pins: Sequence[str] = (),
    task_type: str = TaskType.BLENDER,
    chain: bool = False,
    name: str = "job",
) -> tuple[Job, list[Task]]:
    """A job with ``tasks`` one-frame tasks; ``chain`` makes each depend on the previous."""
    job = Job(
        name=name,
        priority=priority,
        frames=f"1-{tasks}",
        frame_count=tasks,
        chunk_size=1,
        blend_file="scene.blend",
        tag=tag,
    )
    session.add(job)
    session.flush()
    assert job.id is not None
    created = []
    for order in range(tasks):
        task = Task(
            job_id=job.id,
            name=f"render-{order + 1}",
            type=task_type,
            task_order=order,
            frames=[order + 1],
        )
        session.add(task)
        session.flush()
        if chain and created:
            session.add(TaskDependency(task_id=task.id, depends_on_id=created[-1].id))
        created.append(task)
    for runner_name in pins:
        session.add(JobPin(job_id=job.id, runner_name=runner_name))
    session.flush()
    return job, created


def make_runner(
    session: Session,
    name: str,
    *,
    task_types: Sequence[str] = (TaskType.BLENDER,),
    tags: Sequence[str] = (),
    enabled: bool = True,
) -> Runner:
    runner = Runner(
        name=name,
        task_types=list(task_types),
        tags=list(tags),
        enabled=enabled,
        last_seen_at=utcnow(),
    )
    session.add(runner)
    session.flush()
    return runner


def reload(engine: Engine, model: type, key: object):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.get(model, key)
