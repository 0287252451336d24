"""Where the runners' hottest database work (claims, completions, heartbeats) runs.

On the shared worker threads, this work competed for the interpreter lock with every other
request's Python work, and with itself: SQLite releases the lock around each statement, so a
claim holding SQLite's write lock waited for the lock back while other threads ran, and the
claims queued behind it on the writer mutex each woke and slept in turn. Under load that
contention cost more CPU than the work (the dispatch benchmark: 5.2–6.2 ms of manager CPU per
task on a thread of its own, 4.1–4.8 ms on the loop).

So on SQLite the work runs on the event loop itself: each piece takes well under a
millisecond, a database look never waits (WAL readers do not block), and a write that would
have to wait for SQLite's writer (held by another thread of the manager, or by another
process such as the ``config`` command) is not started there (``fastsql.without_waiting``)
but run again from the start on the lane's thread, where waiting is harmless. On PostgreSQL,
where every statement waits on a round trip and writers do not exclude each other, it runs on
a few threads of its own, and claims one at a time on one more (``run_claim``): claimers at
the same instant all pick the same best job, and all but the first found its task locked and
fell back to looking at every runnable task (the dispatch benchmark on PostgreSQL: p99 from a
task becoming runnable to a runner holding it 596–626 ms with claims on the shared threads,
33–49 ms in turn, and 15–20% more claims a second).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine

from manager.db import is_sqlite, make_engine
from manager.fastsql import WouldWait, without_waiting

P = ParamSpec("P")
T = TypeVar("T")

POSTGRES_THREADS = 4


class HotLane:
    def __init__(self, engine: Engine, write_engine: Engine | None = None) -> None:
        self.inline = is_sqlite(engine)
        # On PostgreSQL the lane has connections of its own (see ``own_engine``).
        self.engine = engine if self.inline else own_engine(engine)
        self.write_engine = (write_engine or engine) if self.inline else self.engine
        self._executor = ThreadPoolExecutor(
            1 if self.inline else POSTGRES_THREADS, thread_name_prefix="hot-lane"
        )
        self._claims = None if self.inline else ThreadPoolExecutor(1, thread_name_prefix="claims")
        self.ran_inline = 0
        self.deferred = 0
        """How many calls ran on the loop, and how many of those had to go to the thread."""

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)``: on the loop where it cannot wait, else on a thread.

        ``function`` must change nothing before its first writing transaction, so that a
        call stopped there by ``WouldWait`` can start again on the thread.
        """
        if self.inline:
            self.ran_inline += 1
            try:
                with without_waiting():
                    return function(*args, **kwargs)
            except WouldWait:
                self.deferred += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def run_claim(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A claim attempt: as ``run``, but on PostgreSQL after the claims before it."""
        if self._claims is None:
            return await self.run(function, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._claims, functools.partial(function, *args, **kwargs)
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._claims is not None:
            self._claims.shutdown(wait=False, cancel_futures=True)
        if not self.inline:  # (the lane's own pool)
            self.engine.dispose()


def own_engine(engine: Engine) -> Engine:
    """A pool for the lane's threads alone (its four, and the claims' one): the web page's
    sessions, which end with a ROLLBACK and may deallocate prepared statements, never touch
    the connections the hot statements are prepared on."""
    return make_engine(
        engine.url.render_as_string(hide_password=False),
        pool_size=POSTGRES_THREADS + 1,
        max_overflow=POSTGRES_THREADS,
    )
