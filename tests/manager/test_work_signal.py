"""WorkSignal wakes the longest-waiting runners first, and never loses a wake-up."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from manager.app import create_app
from manager.db import make_engine, session_scope
from manager.settings import ManagerSettings
from manager.signals import WorkSignal
from tests.manager.conftest import Farm
from tests.manager.factories import make_job


def test_notify_wakes_the_oldest_waiters_only():
    async def scenario() -> list[int | None]:
        signal = WorkSignal()
        signal.bind(asyncio.get_running_loop())
        tickets = [signal.ticket() for _ in range(3)]
        waits = [asyncio.create_task(signal.wait(t, 0.3)) for t in tickets]
        await asyncio.sleep(0)
        signal.notify(2)
        return list(await asyncio.gather(*waits))

    assert asyncio.run(scenario()) == [3, 3, None]


def test_a_wake_up_before_waiting_is_kept_by_the_ticket():
    async def scenario() -> int | None:
        signal = WorkSignal()
        signal.bind(asyncio.get_running_loop())
        ticket = signal.ticket()
        signal.notify(1)  # arrives while the runner is still looking in the database
        await asyncio.sleep(0)
        return await signal.wait(ticket, 0.3)

    assert asyncio.run(scenario()) == 1


def test_an_unused_wake_up_passes_to_the_next_waiter():
    async def scenario() -> tuple[int | None, int | None]:
        signal = WorkSignal()
        signal.bind(asyncio.get_running_loop())
        first, second = signal.ticket(), signal.ticket()
        second_wait = asyncio.create_task(signal.wait(second, 0.3))
        signal.notify(1)
        budget = await signal.wait(first, 0.3)
        assert budget is not None
        signal.pass_on(budget)  # the first runner could not take the task
        return budget, await second_wait

    assert asyncio.run(scenario()) == (2, 1)


def test_discarding_a_woken_ticket_hands_the_wake_up_on():
    async def scenario() -> int | None:
        signal = WorkSignal()
        signal.bind(asyncio.get_running_loop())
        first, second = signal.ticket(), signal.ticket()
        second_wait = asyncio.create_task(signal.wait(second, 0.3))
        signal.notify(1)
        await asyncio.sleep(0.01)
        signal.discard(first)  # it found a different task on its own
        return await second_wait

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_work_made_on_one_manager_wakes_runners_waiting_on_another(
    farm: Farm, manager_settings: ManagerSettings, tmp_path: Path
):
    """Two manager processes' worth of apps on one PostgreSQL: LISTEN/NOTIFY between them."""
    engine = make_engine(manager_settings.database_url)
    with session_scope(engine) as session:
        make_job(session, tasks=2, task_type="misc", chain=True)
    engine.dispose()
    other_settings = manager_settings.model_copy(update={"storage": tmp_path / "other"})
    with TestClient(create_app(other_settings)) as other:
        assert other.app.state.work_relay.listening.wait(10)  # type: ignore[attr-defined]
        assert farm.client.app.state.work_relay.listening.wait(10)  # type: ignore[attr-defined]
        key = farm.auth(farm.runner_key)
        here, there = (
            client.post(
                "/api/runner/register", json={"name": name, "task_types": ["misc"]}, headers=key
            ).json()["id"]
            for client, name in ((farm.client, "here"), (other, "there"))
        )
        first = farm.client.post(f"/api/runner/{here}/claim", params={"wait": 0}, headers=key)
        assert first.status_code == 200, first.text
        answer: list[tuple[float, Response]] = []

        def wait_for_work() -> None:
            reply = other.post(f"/api/runner/{there}/claim", params={"wait": 15}, headers=key)
            answer.append((time.monotonic(), reply))

        waiter = threading.Thread(target=wait_for_work)
        waiter.start()
        deadline = time.monotonic() + 10
        while other.app.state.work_signal.waiting == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)  # until the runner on the other manager waits in its long poll
        time.sleep(0.2)
        done_at = time.monotonic()
        finished = farm.client.post(
            f"/api/runner/{here}/tasks/{first.json()['id']}/complete", headers=key
        )
        assert finished.status_code == 204, finished.text
        waiter.join(20)
    ((answered_at, second),) = answer
    assert second.status_code == 200 and second.json()["name"] == "render-2"
    # Without the relay the other manager finds the task only at its 5 s re-look.
    assert answered_at - done_at < 2.0, f"woken after {answered_at - done_at:.2f} s"
