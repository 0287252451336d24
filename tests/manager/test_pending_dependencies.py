"""The dependency count that claiming relies on stays right through every status change."""

from __future__ import annotations

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from manager.db import session_scope
from manager.job_control import delete_job, requeue_job
from manager.models import Job, Task, TaskDependency
from tests.manager.factories import make_job
from tests.manager.test_scheduler import claim, engine, report_done, runners  # noqa: F401


def counts(db: Engine, tasks: list[Task]) -> tuple[list[int], list[int]]:
    """(the stored count, the count recomputed from the dependencies) for each task."""
    upstream = aliased(Task)
    with Session(db) as session:
        stored = [session.get(Task, t.id).pending_dependencies for t in tasks]  # type: ignore[union-attr]
        recomputed = [
            session.scalar(
                select(func.count())
                .select_from(TaskDependency)
                .join(upstream, col(upstream.id) == col(TaskDependency.depends_on_id))
                .where(col(TaskDependency.task_id) == t.id, upstream.status != "completed")
            )
            or 0
            for t in tasks
        ]
    return stored, recomputed


def test_count_follows_completion_requeue_and_dependency_changes(engine: Engine):  # noqa: F811
    with session_scope(engine) as session:
        job, tasks = make_job(session, tasks=4, task_type="misc")
        first, second, third, _ = tasks
        # a diamond: the third waits on the first two, the second on the first
        session.add(TaskDependency(task_id=second.id, depends_on_id=first.id))
        session.add(TaskDependency(task_id=third.id, depends_on_id=first.id))
        session.add(TaskDependency(task_id=third.id, depends_on_id=second.id))
    assert counts(engine, tasks) == ([0, 1, 2, 0], [0, 1, 2, 0])
    (node,) = runners(engine, "node", task_types=["misc"])

    handed_out = [claim(engine, node), claim(engine, node)]
    assert {t.id for t in handed_out} == {first.id, tasks[3].id}  # type: ignore[union-attr]
    assert claim(engine, node) is None  # the second and third wait on the first
    report_done(engine, first.id)  # type: ignore[arg-type]
    assert counts(engine, tasks) == ([0, 0, 1, 0], [0, 0, 1, 0])
    assert claim(engine, node).id == second.id  # type: ignore[union-attr]
    report_done(engine, second.id)  # type: ignore[arg-type]
    report_done(engine, tasks[3].id)  # type: ignore[arg-type]
    assert counts(engine, tasks) == ([0, 0, 0, 0], [0, 0, 0, 0])
    assert claim(engine, node).id == third.id  # type: ignore[union-attr]
    report_done(engine, third.id)  # type: ignore[arg-type]

    with session_scope(engine) as session:  # completed tasks become pending again
        requeue_job(session, session.get(Job, job.id), failed_only=False)  # type: ignore[arg-type]
    assert counts(engine, tasks) == ([0, 1, 2, 0], [0, 1, 2, 0])
    report_done_after_claim = claim(engine, node)
    assert report_done_after_claim is not None and report_done_after_claim.id == first.id

    with session_scope(engine) as session:  # dependencies added and removed later count too
        session.add(TaskDependency(task_id=tasks[3].id, depends_on_id=second.id))
        session.execute(
            delete(TaskDependency).where(
                col(TaskDependency.task_id) == third.id,
                col(TaskDependency.depends_on_id) == first.id,
            )
        )
    assert counts(engine, tasks) == ([0, 1, 1, 1], [0, 1, 1, 1])
    with session_scope(engine) as session:  # deleting the job takes the triggers along cleanly
        delete_job(session, session.get(Job, job.id))  # type: ignore[arg-type]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0
