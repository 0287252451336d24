"""The claim prefers the job a runner holds a warm Blender session for, among equal
priorities, on SQLite and PostgreSQL; it never overrides priority or the other rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from manager.db import make_engine, migrate, session_scope
from manager.job_control import pause_job
from manager.models import Job, Runner, Task
from manager.scheduler import claim_next_task
from tests.manager.factories import make_job, make_runner

LEASE = 30.0


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def claimed_job(engine: Engine, runner: Runner, warm_job_id: int | None) -> int | None:
    task_id = claim_next_task(engine, runner, lease_seconds=LEASE, warm_job_id=warm_job_id)
    if task_id is None:
        return None
    with Session(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task.job_id


def test_a_warm_job_goes_first_among_equal_priorities(engine: Engine) -> None:
    with session_scope(engine) as session:
        older, _ = make_job(session, tasks=2, name="older")
        warm, _ = make_job(session, tasks=2, name="warm")
        runner = make_runner(session, "node-1")
        other = make_runner(session, "node-2")
    assert older.id is not None and warm.id is not None
    assert claimed_job(engine, runner, warm.id) == warm.id
    assert claimed_job(engine, other, None) == older.id  # no session: oldest job first
    assert claimed_job(engine, runner, warm.id) == warm.id
    # The warm job has nothing left: the runner takes the next best.
    assert claimed_job(engine, runner, warm.id) == older.id
    assert claimed_job(engine, runner, warm.id) is None


def test_priority_and_job_state_still_win_over_a_warm_session(engine: Engine) -> None:
    with session_scope(engine) as session:
        warm, _ = make_job(session, tasks=1, name="warm")
        urgent, _ = make_job(session, tasks=1, name="urgent", priority=90)
        runner = make_runner(session, "node-1")
    assert claimed_job(engine, runner, warm.id) == urgent.id
    with session_scope(engine) as session:
        job = session.get(Job, warm.id)
        assert job is not None
        pause_job(session, job)
    assert claimed_job(engine, runner, warm.id) is None  # paused: not runnable at all
