"""Runners finishing a job's last tasks at the same moment: the job completes exactly once,
each dependent is made runnable by exactly one of them, and a runner with another API key
changes nothing by its heartbeat, progress or completion. On SQLite and PostgreSQL (where
completion, heartbeat and progress are each one or two statements of their own)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from manager.completion import Finished, finish_task
from manager.db import session_scope
from manager.dispatch import beat, report_progress
from manager.errors import Forbidden
from manager.models import ApiKey, Job, Runner, Task, TaskDependency
from manager.scheduler import claim_next_task
from manager.schemas import TaskProgress
from shared.wire import JobStatus, RunnerStatus, TaskStatus, TaskType
from tests.manager.factories import make_job, make_runner
from tests.manager.test_scheduler import engine  # noqa: F401 (fixture)

LEASE = 60.0
ROUNDS = 8


def _keyed_runners(db: Engine, count: int, prefix: str) -> list[tuple[Runner, ApiKey]]:
    """Runners of misc tasks, each registered with an API key of its own."""
    made = []
    with session_scope(db) as session:
        for index in range(count):
            name = f"{prefix}-{index}"
            key = ApiKey(
                name=name,
                prefix=name[:8],
                key_hash=hashlib.sha256(name.encode()).hexdigest(),
                scope="runner",
            )
            session.add(key)
            session.flush()
            runner = make_runner(session, name, task_types=[TaskType.MISC])
            runner.api_key_id = key.id
            session.add(runner)
            session.flush()
            session.expunge(key)
            made.append((runner, key))
    return made


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Each call in a thread of its own, all released together; their results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # returned and asserted by the caller
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a completion hung (deadlock?)"
    return results


def _claim_each(db: Engine, runners: list[tuple[Runner, ApiKey]]) -> list[int]:
    claimed = []
    for runner, _ in runners:
        task_id = claim_next_task(db, runner, lease_seconds=LEASE)
        assert task_id is not None
        claimed.append(task_id)
    return claimed


def _finish_all(
    db: Engine, runners: list[tuple[Runner, ApiKey]], tasks: list[int]
) -> list[Finished]:
    results = _at_once(
        [
            lambda r=runner, k=key, t=task: finish_task(db, db, r.id, k, t)
            for (runner, key), task in zip(runners, tasks, strict=True)
        ]
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    return results


def test_runners_finishing_a_jobs_last_tasks_together_complete_it(
    engine: Engine,  # noqa: F811
) -> None:
    runners = _keyed_runners(engine, 4, "last")
    for round_ in range(ROUNDS):
        with session_scope(engine) as session:
            job, _ = make_job(session, tasks=len(runners), task_type=TaskType.MISC)
            job_id = job.id
        claimed = _claim_each(engine, runners)
        finished = _finish_all(engine, runners, claimed)
        with Session(engine) as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert job.status == JobStatus.COMPLETED, f"round {round_}: job left {job.status}"
            assert job.finished_at is not None
            statuses = session.exec(select(Task.status).where(Task.job_id == job_id)).all()
            assert set(statuses) == {TaskStatus.COMPLETED}
            assert {r.status for r in session.exec(select(Runner)).all()} == {RunnerStatus.IDLE}
        assert {f.runner.status for f in finished} == {RunnerStatus.IDLE}
        assert [f.runner.id for f in finished] == [runner.id for runner, _ in runners]


def test_a_dependent_of_tasks_finished_together_is_unblocked_exactly_once(
    engine: Engine,  # noqa: F811
) -> None:
    runners = _keyed_runners(engine, 3, "deps")
    for round_ in range(ROUNDS):
        with session_scope(engine) as session:
            _, tasks = make_job(session, tasks=len(runners) + 1, task_type=TaskType.MISC)
            *firsts, last = tasks
            for first in firsts:
                session.add(TaskDependency(task_id=last.id, depends_on_id=first.id))
            last_id = last.id
        claimed = _claim_each(engine, runners)
        assert last_id not in claimed
        finished = _finish_all(engine, runners, claimed)
        unblocked = [task for f in finished for task in f.unblocked]
        assert unblocked == [last_id], f"round {round_}: {unblocked}"
        with Session(engine) as session:
            task = session.get(Task, last_id)
            assert task is not None
            assert (task.status, task.pending_dependencies) == (TaskStatus.QUEUED, 0)
        runner, _ = runners[0]
        assert claim_next_task(engine, runner, lease_seconds=LEASE) == last_id
        finish_task(engine, engine, runner.id, runners[0][1], last_id)


def _row(db: Engine, model: type, key: int) -> dict[str, Any]:
    with Session(db) as session:
        row = session.get(model, key)
        assert row is not None
        return row.model_dump()


def test_another_runners_key_changes_nothing(engine: Engine) -> None:  # noqa: F811
    (owner, owner_key), (_, other_key) = _keyed_runners(engine, 2, "keys")
    with session_scope(engine) as session:
        make_job(session, tasks=1, task_type=TaskType.MISC)
    task_id = claim_next_task(engine, owner, lease_seconds=LEASE)
    assert task_id is not None
    runner_before, task_before = _row(engine, Runner, owner.id), _row(engine, Task, task_id)
    attempts: list[Callable[[], Any]] = [
        lambda: beat(engine, owner.id, other_key, LEASE * 10),
        lambda: report_progress(
            engine,
            owner.id,
            other_key,
            task_id,
            TaskProgress(frames_done=1, activity="forged", log=["forged"]),
            LEASE * 10,
            lambda job, task: pytest.fail("a forged report wrote a log"),
        ),
        lambda: finish_task(engine, engine, owner.id, other_key, task_id),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden) as raised:
            attempt()
        assert raised.value.code == "wrong_runner_key"
    assert _row(engine, Runner, owner.id) == runner_before
    assert _row(engine, Task, task_id) == task_before
    assert beat(engine, owner.id, owner_key, LEASE) == []
    assert _row(engine, Runner, owner.id)["last_seen_at"] > runner_before["last_seen_at"]
