"""A claim that completes the runner's task first (``…/claim?completed=ID``): the task it
unblocked goes to that runner, the other runners are woken only for what it leaves, and an
error about the completion is the one ``…/complete`` gives, with nothing claimed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from manager.db import session_scope
from manager.models import Job, Task, TaskDependency
from shared.wire import TaskType
from tests.manager.conftest import Farm, Spy
from tests.manager.factories import make_job
from tests.manager.test_fast_lane import _async_claim
from tests.manager.test_jobs_api import submit


def register(farm: Farm, name: str = "node-1") -> int:
    """A runner that also takes misc tasks."""
    reply = farm.client.post(
        "/api/runner/register",
        headers=farm.auth(farm.runner_key),
        json={"name": name, "task_types": ["blender", "misc"]},
    )
    assert reply.status_code == 200, reply.text
    return int(reply.json()["id"])


@pytest.fixture
def wake_ups(farm: Farm) -> Iterator[list[int | None]]:
    """Every wake-up the manager sends to waiting runners: how many it wakes."""
    app: Any = farm.client.app
    signal = app.state.work_signal
    sent: list[int | None] = []
    notify = signal.notify

    def recorded(count: int | None = None) -> None:
        if count is None or count > 0:  # (a count of 0 wakes no one)
            sent.append(count)
        notify(count)

    signal.notify = recorded
    yield sent
    signal.notify = notify


def _job(farm: Farm, tasks: int, dependencies: list[tuple[int, int]]) -> list[int]:
    """A job of ``tasks`` misc tasks; each (a, b) makes task a wait for task b."""
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        _, created = make_job(session, tasks=tasks, task_type=TaskType.MISC)
        ids = [task.id for task in created]
        for waiting, first in dependencies:
            session.add(TaskDependency(task_id=ids[waiting], depends_on_id=ids[first]))
    return [task_id for task_id in ids if task_id is not None]


def _task(farm: Farm, task_id: int) -> Task:
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        session.expunge(task)
        return task


def _claim(farm: Farm, runner_id: int, query: str, scheme: str = "Bearer") -> Any:
    return farm.client.post(
        f"/api/runner/{runner_id}/claim?{query}",
        headers={"Authorization": f"{scheme} {farm.runner_key}"},
    )


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"], ids=["fast lane", "FastAPI"])
def test_the_runner_that_completes_a_task_takes_the_next_and_no_one_is_woken(
    farm: Farm, spy: Spy, wake_ups: list[int | None], scheme: str
) -> None:
    runner_id = register(farm)
    first, second, third = _job(farm, 3, [(1, 0), (2, 1)])  # a chain
    assert _claim(farm, runner_id, "wait=0").json()["id"] == first
    spy.paths.clear()
    reply = _claim(farm, runner_id, f"wait=0&completed={first}", scheme)
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == second
    assert _task(farm, first).status == "completed"
    assert (_task(farm, second).status, _task(farm, second).runner_id) == ("active", runner_id)
    assert wake_ups == []  # what the completion unblocked, the runner took itself
    assert spy.paths == ([] if scheme == "Bearer" else [f"/api/runner/{runner_id}/claim"])
    last = _claim(farm, runner_id, f"wait=0&completed={second}", scheme)
    assert last.status_code == 200 and last.json()["id"] == third
    done = _claim(farm, runner_id, f"wait=0&completed={third}", scheme)
    assert done.status_code == 204, done.text  # nothing left: completed, nothing claimed
    assert _task(farm, third).status == "completed"
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        assert session.exec(select(Job.status)).one() == "completed"


def test_what_the_completing_runner_leaves_wakes_a_waiting_runner(
    farm: Farm, wake_ups: list[int | None]
) -> None:
    runner_id, waiting_id = register(farm), register(farm, "node-2")
    first, left, right = _job(farm, 3, [(1, 0), (2, 0)])  # two tasks wait for the first
    assert _claim(farm, runner_id, "wait=0").json()["id"] == first
    app: Any = farm.client.app
    signal = app.state.work_signal
    portal: Any = farm.client.portal
    waiter: Any = portal.start_task_soon(
        lambda: _async_claim(farm, waiting_id, farm.auth(farm.runner_key))  # waits 10 s
    )
    deadline = time.monotonic() + 5
    while signal.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    reply = _claim(farm, runner_id, f"wait=0&completed={first}")
    assert reply.status_code == 200, reply.text
    other = waiter.result(timeout=10)
    assert time.monotonic() - started < 2  # woken, not at its next look 5 s later
    assert other.status_code == 200, other.text
    assert {reply.json()["id"], other.json()["id"]} == {left, right}
    assert wake_ups == [1]  # one of the two unblocked went to the completing runner


def test_a_completion_the_manager_refuses_claims_nothing(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    runner_id, other_id = register(farm), register(farm, "node-2")
    job = submit(farm, scene_bpy, frames="1-2").json()
    task = _claim(farm, runner_id, "wait=0").json()
    # not this runner's task: the error ``…/complete`` gives, the same both ways
    fast, slow = (
        _claim(farm, other_id, f"wait=0&completed={task['id']}", scheme)
        for scheme in ("Bearer", "bearer")
    )
    alone = farm.client.post(
        f"/api/runner/{other_id}/tasks/{task['id']}/complete", headers=farm.auth(farm.runner_key)
    )
    assert fast.status_code == slow.status_code == alone.status_code == 409
    assert fast.json() == slow.json() == alone.json()
    assert fast.json()["code"] == "not_yours"
    # a render task whose frame never arrived: refused, the task still the runner's
    missing = _claim(farm, runner_id, f"wait=0&completed={task['id']}")
    assert missing.status_code == 409 and missing.json()["code"] == "outputs_missing"
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        held = session.exec(
            select(Task.id, Task.runner_id).where(col(Task.status) == "active")
        ).all()
    assert held == [(task["id"], runner_id)]  # nothing claimed by either refused request
    assert job["id"] == task["job"]["id"]


@pytest.mark.parametrize("query", ["completed=0", "completed=x", "completed=1&completed=2"])
def test_an_unusual_completed_parameter_goes_to_fastapi(farm: Farm, spy: Spy, query: str) -> None:
    runner_id = register(farm)
    spy.paths.clear()
    reply = _claim(farm, runner_id, f"wait=0&{query}")
    assert spy.paths == [f"/api/runner/{runner_id}/claim"]
    assert reply.status_code in (404, 422), reply.text
