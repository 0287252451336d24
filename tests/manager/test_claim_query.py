"""The claim finds the best job first and then its first task, so that it need not look at
every queued task; on random farms (priorities, tags, pins, blocklists, failures, types,
capabilities, dependencies, job and task states) it picks exactly the task that ordering
every runnable task would pick first, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from manager.db import make_engine, migrate, session_scope
from manager.fastsql import FastStatement, transaction
from manager.models import JobBlocklist, JobPin, Runner, TaskFailure
from manager.scheduler import RUNNER_LISTS, best_job_first_task, runnable_tasks, runner_params
from shared.wire import JobStatus, TaskStatus, TaskType
from tests.manager.factories import make_job, make_runner

ALL = FastStatement(runnable_tasks().limit(1), lists=RUNNER_LISTS)
FAST = FastStatement(best_job_first_task().limit(1), lists=RUNNER_LISTS)
TAGS = ["gpu", "cpu"]
CAPABILITIES = ["encode:EXR_AV1_MP4", "blender:5.0"]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def random_farm(engine: Engine, rng: random.Random) -> list[Runner]:
    with session_scope(engine) as session:
        runners = [
            make_runner(
                session,
                f"node-{i}",
                task_types=rng.sample(list(TaskType), rng.randint(1, 3)),
                tags=rng.sample(TAGS, rng.randint(0, 2)),
            )
            for i in range(4)
        ]
        for runner in runners:
            runner.capabilities = rng.sample(CAPABILITIES, rng.randint(0, 2))
        for number in range(rng.randint(3, 9)):
            job, tasks = make_job(
                session,
                tasks=rng.randint(1, 6),
                priority=rng.choice([10, 50, 50, 90]),
                tag=rng.choice([None, None, *TAGS]),
                pins=rng.sample([r.name for r in runners], rng.choice([0, 0, 1, 2])),
                task_type=rng.choice(list(TaskType)),
                chain=rng.random() < 0.3,
                name=f"job-{number}",
            )
            job.status = rng.choice(
                [JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.ACTIVE, "paused"]
            )
            for task in tasks:
                task.task_order = rng.randint(0, 3)  # ties are broken by the task id
                task.status = rng.choice(
                    [TaskStatus.QUEUED] * 3 + [TaskStatus.SOFT_FAILED, TaskStatus.COMPLETED]
                )
                if rng.random() < 0.2:
                    task.capability = rng.choice(CAPABILITIES)
                if rng.random() < 0.15:
                    session.add(
                        TaskFailure(
                            task_id=task.id, job_id=job.id, runner_id=rng.choice(runners).id
                        )
                    )
            if rng.random() < 0.2:
                session.add(JobBlocklist(job_id=job.id, runner_id=rng.choice(runners).id))
        session.flush()
        session.expunge_all()
    return runners


@pytest.mark.parametrize("seed", range(12))
def test_the_best_job_first_picks_what_looking_at_every_task_picks(
    engine: Engine, seed: int
) -> None:
    rng = random.Random(seed)
    runners = random_farm(engine, rng)
    picked = 0
    with transaction(engine) as conn:
        for runner in runners:
            for warm_job_id in (None, rng.randint(1, 9)):
                params = {**runner_params(runner), "warm_job_id": warm_job_id}
                expected = conn.first(ALL, params)
                assert conn.first(FAST, params) == expected, (runner.name, warm_job_id)
                picked += expected is not None
    assert picked  # (each seed's farm gives some runner some work)


def test_pins_keep_a_job_from_other_runners(engine: Engine) -> None:
    with session_scope(engine) as session:
        pinned, _ = make_job(session, priority=90, pins=["node-1"])
        free, free_tasks = make_job(session, priority=10)
        one, two = make_runner(session, "node-1"), make_runner(session, "node-2")
        session.flush()
        params_one, params_two = runner_params(one), runner_params(two)
        assert session.get(JobPin, (pinned.id, "node-1")) is not None
        free_first = free_tasks[0].id
    with transaction(engine) as conn:
        first_of_pinned = conn.first(FAST, {**params_one, "warm_job_id": None})
        assert first_of_pinned is not None and first_of_pinned[0] != free_first
        assert conn.first(FAST, {**params_two, "warm_job_id": None}) == (free_first,)
