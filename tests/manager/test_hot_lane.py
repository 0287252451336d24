"""The hot lane runs the runners' database work on the event loop when that cannot wait, and
on its own thread when it would: behind this process's writer, or another process's lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, select, update
from sqlmodel import col

from manager.db import make_engine, migrate, session_scope, sqlite_writer
from manager.fastsql import FastStatement, WouldWait, transaction, without_waiting
from manager.hot_lane import HotLane
from manager.models import Runner

RENAME = FastStatement(
    update(Runner).where(col(Runner.id) == bindparam("id")).values(name=bindparam("name"))
)
NAME = FastStatement(select(col(Runner.name)).where(col(Runner.id) == bindparam("id")))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'framefarm.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def runner_id(engine: Engine) -> int:
    with session_scope(engine) as session:
        runner = Runner(name="before")
        session.add(runner)
        session.flush()
        assert runner.id is not None
        return runner.id


def rename(engine: Engine, runner_id: int, name: str) -> tuple[str, bool]:
    """Writes, and says which thread it ran on (the loop's, or another)."""
    with transaction(engine, write=True) as conn:
        conn.rowcount(RENAME, {"id": runner_id, "name": name})
    return name, threading.current_thread() is threading.main_thread()


def name_of(engine: Engine, runner_id: int) -> str:
    with transaction(engine) as conn:
        return str(conn.scalar(NAME, {"id": runner_id}))


def test_on_sqlite_the_work_runs_on_the_loop_when_nothing_holds_the_writer(
    engine: Engine, runner_id: int
) -> None:
    lane = HotLane(engine)

    async def main() -> tuple[str, bool]:
        return await lane.run(rename, engine, runner_id, "inline")

    try:
        assert asyncio.run(main()) == ("inline", True)
    finally:
        lane.close()
    assert (lane.ran_inline, lane.deferred) == (1, 0)
    assert name_of(engine, runner_id) == "inline"


def test_work_behind_this_process_writer_goes_to_the_thread_and_waits_there(
    engine: Engine, runner_id: int
) -> None:
    lane = HotLane(engine)
    writer = sqlite_writer(engine)
    writer.acquire()  # another request of this manager writes
    released_at: list[float] = []

    def release_soon() -> None:
        time.sleep(0.3)
        released_at.append(time.monotonic())
        writer.release()

    async def main() -> tuple[str, bool]:
        threading.Thread(target=release_soon).start()
        ticks = 0

        async def tick() -> None:  # the loop keeps answering meanwhile
            nonlocal ticks
            while not released_at:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(tick())
        result = await lane.run(rename, engine, runner_id, "deferred")
        await ticking
        assert ticks >= 10
        return result

    try:
        assert asyncio.run(main()) == ("deferred", False)
    finally:
        lane.close()
    assert (lane.ran_inline, lane.deferred) == (1, 1)
    assert name_of(engine, runner_id) == "deferred"


def test_another_process_holding_sqlite_write_lock_does_not_stall_the_loop(
    engine: Engine, runner_id: int, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "framefarm.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the `config` command, say, mid-write
    lane = HotLane(engine)

    async def main() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        started = time.monotonic()
        pending = asyncio.create_task(lane.run(rename, engine, runner_id, "after the other"))
        await asyncio.sleep(0)
        assert time.monotonic() - started < 0.1  # the loop was not held
        return await pending

    try:
        assert asyncio.run(main()) == ("after the other", False)
    finally:
        lane.close()
        other.close()
    assert lane.deferred == 1
    assert name_of(engine, runner_id) == "after the other"


def test_a_write_refused_without_waiting_leaves_the_connection_usable(
    engine: Engine, runner_id: int
) -> None:
    writer = sqlite_writer(engine)
    with writer, without_waiting(), pytest.raises(WouldWait):
        rename(engine, runner_id, "never")
    assert name_of(engine, runner_id) == "before"
    assert rename(engine, runner_id, "later")[0] == "later"
    assert name_of(engine, runner_id) == "later"


def test_on_postgresql_the_work_runs_on_threads_and_on_sqlite_on_the_loop(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with session_scope(engine) as session:
        runner = Runner(name="before")
        session.add(runner)
        session.flush()
        runner_id = runner.id
    assert runner_id is not None
    lane = HotLane(engine)

    async def main() -> list[tuple[str, bool]]:
        return list(
            await asyncio.gather(
                *(lane.run(rename, engine, runner_id, f"name-{n}") for n in range(4))
            )
        )

    try:
        results = asyncio.run(main())
        last = name_of(engine, runner_id)
    finally:
        lane.close()
        engine.dispose()
    on_sqlite = database_url.startswith("sqlite")
    assert [on_loop for _, on_loop in results] == [on_sqlite] * 4
    assert lane.ran_inline == (4 if on_sqlite else 0)
    assert last in {f"name-{n}" for n in range(4)}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_claims_take_turns_and_other_work_does_not(database_url: str) -> None:
    engine = make_engine(database_url)
    lane = HotLane(engine)
    inside, most = 0, {"claims": 0, "other": 0}
    guard = threading.Lock()

    def hold(kind: str) -> str:
        nonlocal inside
        with guard:
            inside += 1
            most[kind] = max(most[kind], inside)
        time.sleep(0.05)
        with guard:
            inside -= 1
        return threading.current_thread().name

    async def main() -> tuple[list[str], list[str]]:
        claims = await asyncio.gather(*(lane.run_claim(hold, "claims") for _ in range(4)))
        other = await asyncio.gather(*(lane.run(hold, "other") for _ in range(4)))
        return list(claims), list(other)

    try:
        claim_threads, other_threads = asyncio.run(main())
    finally:
        lane.close()
        engine.dispose()
    assert most == {"claims": 1, "other": 4}
    assert len(set(claim_threads)) == 1 and not set(claim_threads) & set(other_threads)
