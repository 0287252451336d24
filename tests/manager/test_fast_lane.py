"""The runner fast lane answers a runner's ordinary claims and completions itself, gives the
same answers as the FastAPI routes behind it, and leaves every other request to them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select, update

from manager.db import session_scope
from manager.models import Runner, Task, utcnow
from tests.manager.conftest import Farm, Spy, fast_lane_of
from tests.manager.test_jobs_api import submit
from tests.manager.test_runner_api import register, upload


def _claim_scope(farm: Farm, runner_id: int) -> dict[str, Any]:
    app: Any = farm.client.app
    return {
        "type": "http",
        "method": "POST",
        "path": f"/api/runner/{runner_id}/claim",
        "query_string": b"wait=30",
        "headers": [(b"authorization", f"Bearer {farm.runner_key}".encode())],
        "app": app,
    }


def both(farm: Farm, path: str, key: str, **options: Any) -> tuple[Any, Any]:
    """The same request through the fast lane (``Bearer``) and through FastAPI (``bearer``,
    which FastAPI accepts too, but the lane leaves alone)."""
    fast = farm.client.post(path, headers={"Authorization": f"Bearer {key}"}, **options)
    slow = farm.client.post(path, headers={"Authorization": f"bearer {key}"}, **options)
    return fast, slow


def test_a_runners_claims_and_completions_take_the_fast_lane(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    runner_id = register(farm)
    spy.paths.clear()
    auth = farm.auth(farm.runner_key)
    assert (
        farm.client.post(f"/api/runner/{runner_id}/claim?wait=0", headers=auth).status_code == 204
    )
    job = submit(farm, scene_bpy, frames="1").json()
    claimed = farm.client.post(f"/api/runner/{runner_id}/claim?wait=0.5", headers=auth)
    assert claimed.status_code == 200, claimed.text
    task = claimed.json()
    assert task["job"]["id"] == job["id"]
    assert upload(farm, runner_id, task["id"], 1, b"not really an EXR").status_code == 201
    spy.paths.clear()  # (uploads are FastAPI's)
    done = farm.client.post(f"/api/runner/{runner_id}/tasks/{task['id']}/complete", headers=auth)
    assert done.status_code == 204, done.text
    assert spy.paths == []  # none of the claims and completions reached FastAPI
    state = farm.client.get(f"/api/jobs/{job['id']}", headers=farm.auth(farm.user_key))
    assert state.json()["status"] == "completed"


def test_a_claimed_task_reads_the_same_both_ways(farm: Farm, spy: Spy, scene_bpy: Path) -> None:
    runner_id = register(farm)
    submit(farm, scene_bpy, frames="1")
    auth = farm.auth(farm.runner_key)
    spy.paths.clear()
    fast = farm.client.post(f"/api/runner/{runner_id}/claim?wait=0", headers=auth)
    assert fast.status_code == 200 and spy.paths == []
    task_id = fast.json()["id"]
    released = farm.client.post(
        f"/api/runner/{runner_id}/tasks/{task_id}/release",
        headers=auth,
        json={"reason": "shutting down"},
    )
    assert released.status_code == 204, released.text
    slow = farm.client.post(
        f"/api/runner/{runner_id}/claim?wait=0",
        headers={"Authorization": f"bearer {farm.runner_key}"},
    )
    assert slow.status_code == 200 and spy.paths[-1].endswith("/claim")
    assert slow.json() == fast.json()  # (a released task does not count as an attempt)


def test_errors_read_the_same_both_ways(farm: Farm, spy: Spy, scene_bpy: Path) -> None:
    runner_id = register(farm)
    other_id = register(farm, "node-2")
    submit(farm, scene_bpy, frames="1")
    cases = [
        (f"/api/runner/{runner_id + 100}/claim?wait=0", farm.runner_key, 404),
        (f"/api/runner/{runner_id}/claim?wait=0", farm.user_key, 403),
        (f"/api/runner/{runner_id}/claim?wait=0", "ff_unknown", 401),
        (f"/api/runner/{runner_id}/tasks/99999/complete", farm.runner_key, 404),
    ]
    for path, key, expected in cases:
        fast, slow = both(farm, path, key)
        assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), path
        assert fast.status_code == expected, fast.text
    task = farm.client.post(
        f"/api/runner/{runner_id}/claim?wait=0", headers=farm.auth(farm.runner_key)
    ).json()
    fast, slow = both(farm, f"/api/runner/{other_id}/tasks/{task['id']}/complete", farm.runner_key)
    assert fast.status_code == slow.status_code == 409
    assert fast.json() == slow.json() and fast.json()["code"] == "not_yours"


@pytest.mark.parametrize(
    "query",
    ["wait=soon", "wait=-1", "wait=0&wait=0", "warm_job=0", f"warm_job={2**63}", "wait=1e-2"],
)
def test_unusual_parameters_go_to_fastapi(farm: Farm, spy: Spy, query: str) -> None:
    runner_id = register(farm)
    spy.paths.clear()
    reply = farm.client.post(
        f"/api/runner/{runner_id}/claim?{query}", headers=farm.auth(farm.runner_key)
    )
    assert spy.paths == [f"/api/runner/{runner_id}/claim"]
    assert reply.status_code in (204, 422), reply.text


@pytest.mark.parametrize("path", ["/api/runner/0/claim", f"/api/runner/{2**63}/claim"])
def test_ids_out_of_range_go_to_fastapi(farm: Farm, spy: Spy, path: str) -> None:
    reply = farm.client.post(path, headers=farm.auth(farm.runner_key))
    assert spy.paths == [path]
    assert reply.status_code == 422


def test_a_runner_that_hangs_up_leaves_the_long_poll(farm: Farm, spy: Spy) -> None:
    runner_id = register(farm)
    app: Any = farm.client.app
    signal = app.state.work_signal
    sent: list[dict[str, Any]] = []

    async def hang_up_soon() -> float:
        import asyncio

        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(0.3)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        started = time.monotonic()
        await fast_lane_of(farm)(_claim_scope(farm, runner_id), receive, send)
        return time.monotonic() - started

    portal: Any = farm.client.portal
    took = portal.call(hang_up_soon)
    # Woken at the next look (at most 5 s), it answers no one and leaves the queue.
    assert took < 6
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] in ([], [204])
    assert signal.waiting == 0


def runner_with_task(farm: Farm, scene_bpy: Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """A registered runner that claimed the first task of a new 2-frame job."""
    runner_id = register(farm)
    job = submit(farm, scene_bpy, frames="1-2").json()
    auth = farm.auth(farm.runner_key)
    task = farm.client.post(f"/api/runner/{runner_id}/claim?wait=0", headers=auth).json()
    return runner_id, job, task


def test_a_heartbeat_keeps_the_runner_and_its_lease_and_names_tasks_to_stop(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    runner_id, job, task = runner_with_task(farm, scene_bpy)
    auth = farm.auth(farm.runner_key)
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        runner = session.get(Runner, runner_id)
        claimed = session.get(Task, task["id"])
        assert runner is not None and claimed is not None
        runner.status, runner.last_seen_at = "offline", utcnow() - timedelta(minutes=5)
        claimed.lease_expires_at = utcnow() - timedelta(seconds=1)
    spy.paths.clear()
    beat = farm.client.post(f"/api/runner/{runner_id}/heartbeat", headers=auth, json={})
    assert beat.status_code == 200 and beat.json() == {"ok": True, "canceled_tasks": []}
    assert spy.paths == []
    with session_scope(app.state.engine) as session:
        runner = session.get(Runner, runner_id)
        claimed = session.get(Task, task["id"])
        assert runner is not None and claimed is not None and runner.last_seen_at is not None
        assert runner.status == "idle"  # back from offline
        assert utcnow() - runner.last_seen_at < timedelta(seconds=5)
        assert claimed.lease_expires_at is not None and claimed.lease_expires_at > utcnow()
    canceled = farm.client.post(f"/api/jobs/{job['id']}/cancel", headers=farm.auth(farm.user_key))
    assert canceled.status_code == 200, canceled.text
    fast, slow = both(farm, f"/api/runner/{runner_id}/heartbeat", farm.runner_key, json={})
    assert fast.json() == slow.json() == {"ok": True, "canceled_tasks": [task["id"]]}
    fast, slow = both(farm, f"/api/runner/{runner_id + 9}/heartbeat", farm.runner_key, json={})
    assert fast.status_code == slow.status_code == 404 and fast.json() == slow.json()


def test_progress_reports_take_the_fast_lane_and_read_the_same_both_ways(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    runner_id, job, task = runner_with_task(farm, scene_bpy)
    auth = farm.auth(farm.runner_key)
    path = f"/api/runner/{runner_id}/tasks/{task['id']}/progress"
    app: Any = farm.client.app
    spy.paths.clear()
    report = {"frames_done": 7, "activity": "rendering frame 1", "log": ["line one", "line two"]}
    fast = farm.client.post(path, headers=auth, json=report)
    assert fast.status_code == 200 and fast.json() == {"keep_running": True, "reason": None}
    assert spy.paths == []
    with session_scope(app.state.engine) as session:
        reported = session.get(Task, task["id"])
        assert reported is not None
        assert reported.frames_done == 1  # no more than the task has frames
        assert reported.activity == "rendering frame 1"
        assert reported.last_progress_at is not None
        assert utcnow() - reported.last_progress_at < timedelta(seconds=5)
    # A report without frames or activity keeps what the last one said.
    fast, slow = both(farm, path, farm.runner_key, json={"log": ["line three"]})
    assert fast.json() == slow.json() == {"keep_running": True, "reason": None}
    with session_scope(app.state.engine) as session:
        reported = session.get(Task, task["id"])
        assert reported is not None and reported.frames_done == 1
        assert reported.activity == "rendering frame 1"
    log = app.state.storage.task_log_path(job["id"], task["id"]).read_text()
    assert log == "line one\nline two\nline three\nline three\n"
    # Bad bodies go on to FastAPI, which says what is wrong.
    spy.paths.clear()
    bad = farm.client.post(path, headers=auth, json={"frames_done": -1})
    assert bad.status_code == 422 and spy.paths == [path]
    text = farm.client.post(
        path, headers={**auth, "Content-Type": "text/plain"}, content=b'{"log": []}'
    )
    assert spy.paths == [path, path] and text.status_code == 422
    # A canceled job stops the task; someone else's task is refused the same both ways.
    farm.client.post(f"/api/jobs/{job['id']}/cancel", headers=farm.auth(farm.user_key))
    fast, slow = both(farm, path, farm.runner_key, json={"frames_done": 1})
    assert fast.status_code == slow.status_code == 200 and fast.json() == slow.json()
    assert fast.json()["keep_running"] is False
    other = register(farm, name="other")
    elsewhere = f"/api/runner/{other}/tasks/{task['id']}/progress"
    fast, slow = both(farm, elsewhere, farm.runner_key, json={})
    assert fast.json() == slow.json()
    assert fast.json()["keep_running"] is False
    fast, slow = both(farm, f"/api/runner/{runner_id + 99}/tasks/1/progress", "nope", json={})
    assert fast.status_code == slow.status_code == 401 and fast.json() == slow.json()


def test_a_task_claimed_for_a_runner_that_hung_up_goes_back_at_once(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    gone, other = register(farm, name="gone"), register(farm, name="other")
    submit(farm, scene_bpy, frames="1")
    sent: list[dict[str, Any]] = []

    async def claim_and_hang_up() -> None:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await fast_lane_of(farm)(_claim_scope(farm, gone), receive, send)

    portal: Any = farm.client.portal
    portal.call(claim_and_hang_up)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] in ([], [204])
    auth = farm.auth(farm.runner_key)
    task = farm.client.post(f"/api/runner/{other}/claim?wait=0", headers=auth)
    assert task.status_code == 200, task.text
    app: Any = farm.client.app
    with session_scope(app.state.engine) as session:
        claimed = session.get(Task, task.json()["id"])
        assert claimed is not None and claimed.runner_id == other
        assert claimed.attempts == 1  # the hand-back did not count as an attempt


def test_a_runner_that_hung_up_while_waiting_passes_its_wake_up_on(
    farm: Farm, spy: Spy, scene_bpy: Path
) -> None:
    import asyncio

    gone, other = register(farm, name="gone"), register(farm, name="other")
    app: Any = farm.client.app
    signal = app.state.work_signal
    portal: Any = farm.client.portal
    hang_up = portal.call(asyncio.Event)

    async def wait_then_hang_up() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await hang_up.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await fast_lane_of(farm)(_claim_scope(farm, gone), receive, send)
        return sent

    waiting = portal.start_task_soon(wait_then_hang_up)
    deadline = time.monotonic() + 5
    while signal.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert signal.waiting == 1
    portal.call(hang_up.set)  # the runner shut down; its long poll is still queued
    auth = farm.auth(farm.runner_key)
    second: Any = portal.start_task_soon(
        lambda: _async_claim(farm, other, auth)  # waits behind the one that left
    )
    deadline = time.monotonic() + 5
    while signal.waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    submit(farm, scene_bpy, frames="1")  # wakes the longest waiter: the one that left
    reply = second.result(timeout=10)
    assert time.monotonic() - started < 2  # not at the next 5 s look
    assert reply.status_code == 200, reply.text
    with session_scope(app.state.engine) as session:
        claimed = session.get(Task, reply.json()["id"])
        assert claimed is not None and claimed.runner_id == other
    assert [m["status"] for m in waiting.result(timeout=5) if "status" in m] in ([], [204])


async def _async_claim(farm: Farm, runner_id: int, auth: dict[str, str]) -> Any:
    import httpx

    app: Any = farm.client.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://farm") as client:
        return await client.post(f"/api/runner/{runner_id}/claim?wait=10", headers=auth)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_heartbeat_does_not_wait_for_a_task_its_runner_is_completing(
    farm: Farm, scene_bpy: Path
) -> None:
    """A completion holds the task's row and then takes the runner's; a heartbeat that held
    the runner's row and waited for the task's deadlocked with it (broken after a second)."""
    runner_id, _, task = runner_with_task(farm, scene_bpy)
    app: Any = farm.client.app
    auth = farm.auth(farm.runner_key)
    with app.state.engine.connect() as completing, ThreadPoolExecutor(1) as pool:
        completing.begin()
        completing.execute(select(col(Task.id)).where(col(Task.id) == task["id"]).with_for_update())
        beating = pool.submit(
            farm.client.post, f"/api/runner/{runner_id}/heartbeat", headers=auth, json={}
        )
        try:
            beat = beating.result(timeout=2)
        except TimeoutError:
            completing.rollback()  # (lets the heartbeat go before the test fails)
            raise AssertionError("the heartbeat waited for the task's row") from None
        assert beat.status_code == 200, beat.text
        # the completion goes on to the runner's row, which the heartbeat no longer holds
        completing.execute(update(Runner).where(col(Runner.id) == runner_id).values(status="idle"))
        completing.commit()
