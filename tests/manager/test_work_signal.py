"""WorkSignal wakes the longest-waiting runners first, and never loses a wake-up."""

from __future__ import annotations

import asyncio

from manager.signals import WorkSignal


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
