"""Wakes long-polling runners the moment new work may be runnable.

Waiters queue up first-in, first-out; ``notify(n)`` wakes the ``n`` runners that have waited
longest, so that one runnable task does not send every idle runner to the database at once.
A woken runner that finds nothing it may take passes the wake-up on to the next one (a task
may need a tag or a type that only some runners have), at most once around the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class WorkSignal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: deque[asyncio.Future[int]] = deque()
        self.publish: Callable[[int | None], None] | None = None
        """Also tells other manager processes (``PostgresWorkRelay.publish``), when set."""

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, count: int | None = None) -> None:
        """Wake ``count`` waiters (all when None), here and in other managers. Any thread."""
        if count is not None and count <= 0:
            return
        self.notify_here(count)
        if self.publish is not None:
            self.publish(count)

    def notify_here(self, count: int | None = None) -> None:
        """Wake ``count`` of this process's waiters (all when None). Safe from any thread."""
        if count is not None and count <= 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, count, None)

    def _wake(self, count: int | None, hops: int | None) -> None:
        budget = len(self._waiters) if hops is None else hops
        woken = 0
        while self._waiters and (count is None or woken < count):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(budget)
                woken += 1

    @property
    def waiting(self) -> int:
        """How many runners wait for work right now."""
        return sum(not waiter.done() for waiter in self._waiters)

    def ticket(self) -> asyncio.Future[int]:
        """Join the queue now, before looking for work, so that no wake-up is missed."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, ticket: asyncio.Future[int], timeout: float) -> int | None:
        """Wait on ``ticket``: the wake-up's hop budget, or None on timeout."""
        try:
            return await asyncio.wait_for(asyncio.shield(ticket), timeout)
        except TimeoutError:
            self.discard(ticket)
            return None

    def discard(self, ticket: asyncio.Future[int]) -> None:
        """Leave the queue; a wake-up the ticket got meanwhile goes on to the next waiter."""
        if not ticket.done():
            ticket.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(ticket)
        elif not ticket.cancelled():
            self.pass_on(ticket.result())

    def hand_on(self, hops: int) -> None:
        """A woken waiter that left gives its wake-up, budget unchanged, to the next one."""
        self._wake(1, hops)

    def pass_on(self, hops: int) -> None:
        if hops > 1:
            self._wake(1, hops - 1)
