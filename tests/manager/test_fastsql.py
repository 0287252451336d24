"""The hot path's precompiled statements give what SQLAlchemy's own execution gives, on
SQLite and PostgreSQL: list parameters of any length, timestamps and JSON both ways,
rollback on error, and driver errors raised as SQLAlchemy's exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, bindparam, create_engine, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, col

from manager import db
from manager.db import make_engine, migrate, session_scope
from manager.errors import database_error_response
from manager.fastsql import FastStatement, transaction
from manager.models import Runner, UTCDateTime


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def runners(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        made = [
            Runner(name=f"r{i}", task_types=["blender", "misc"][: i % 3], tags=[f"t{i}"])
            for i in range(5)
        ]
        session.add_all(made)
        session.flush()
        return [r.id for r in made if r.id is not None]


BY_NAME = (
    select(col(Runner.id), col(Runner.task_types), col(Runner.last_seen_at))
    .where(col(Runner.name).in_(bindparam("names", expanding=True)))
    .order_by(col(Runner.id))
)
NAMED = FastStatement(BY_NAME, lists=["names"])


@pytest.mark.parametrize("names", [[], ["r1"], ["r0", "r2", "r4"], ["nobody", "r3"]])
def test_a_list_parameter_of_any_length_matches_sqlalchemy(
    engine: Engine, runners: list[int], names: list[str]
) -> None:
    with transaction(engine) as conn:
        fast = conn.all(NAMED, {"names": names})
    with engine.connect() as conn:
        expected = [tuple(row) for row in conn.execute(BY_NAME, {"names": names})]
    assert fast == expected
    assert [row[0] for row in fast] == [
        runners[int(name[1:])] for name in sorted(names) if name != "nobody"
    ]


def test_timestamps_and_json_round_trip_as_the_orm_sees_them(
    engine: Engine, runners: list[int]
) -> None:
    seen = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)  # (no microseconds: the edge case)
    mark = FastStatement(
        update(Runner)
        .where(col(Runner.id) == bindparam("runner"))
        .values(last_seen_at=bindparam("seen", type_=UTCDateTime()))
    )
    with transaction(engine, write=True) as conn:
        assert conn.rowcount(mark, {"runner": runners[2], "seen": seen}) == 1
    with Session(engine) as session:
        runner = session.get(Runner, runners[2])
        assert runner is not None
        assert runner.last_seen_at == seen
        assert runner.task_types == ["blender", "misc"]
    with transaction(engine) as conn:
        row = conn.first(NAMED, {"names": ["r2"]})
    assert row == (runners[2], ["blender", "misc"], seen)
    assert row is not None and row[2].tzinfo is not None

    later = FastStatement(
        select(col(Runner.name))
        .where(col(Runner.last_seen_at) > bindparam("since", type_=UTCDateTime()))
        .order_by(col(Runner.name))
    )
    with transaction(engine) as conn:
        assert conn.all(later, {"since": seen - timedelta(microseconds=1)}) == [("r2",)]
        assert conn.all(later, {"since": seen}) == []


def test_an_error_rolls_back_and_is_raised_as_sqlalchemys(
    engine: Engine, runners: list[int]
) -> None:
    rename = FastStatement(
        update(Runner).where(col(Runner.id) == bindparam("runner")).values(name=bindparam("name"))
    )
    with pytest.raises(IntegrityError), transaction(engine, write=True) as conn:
        assert conn.rowcount(rename, {"runner": runners[0], "name": "renamed"}) == 1
        conn.rowcount(rename, {"runner": runners[1], "name": "r2"})  # taken: unique
    with Session(engine) as session:
        names = session.scalars(select(col(Runner.name)).order_by(col(Runner.id))).all()
    assert names == ["r0", "r1", "r2", "r3", "r4"]
    # The connection went back to the pool usable, and the writer mutex was released.
    with transaction(engine, write=True) as conn:
        assert conn.rowcount(rename, {"runner": runners[0], "name": "renamed"}) == 1


def test_a_list_must_be_declared(engine: Engine, runners: list[int]) -> None:
    undeclared = FastStatement(BY_NAME)
    with pytest.raises(ValueError, match="names"), transaction(engine) as conn:
        conn.all(undeclared, {"names": ["r1", "r2"]})


@pytest.mark.parametrize("microsecond", [0, 123456])
def test_a_timestamp_is_stored_exactly_as_the_orm_stores_it(
    engine: Engine, runners: list[int], microsecond: int
) -> None:
    """Stored the same way, timestamps written by either path compare correctly in SQL
    (on SQLite they are text: a different format would order wrongly)."""
    seen = datetime(2026, 3, 4, 5, 6, 7, microsecond, tzinfo=UTC)
    with session_scope(engine) as session:
        orm_written = session.get(Runner, runners[0])
        assert orm_written is not None
        orm_written.last_seen_at = seen
    mark = FastStatement(
        update(Runner)
        .where(col(Runner.id) == bindparam("runner"))
        .values(last_seen_at=bindparam("seen", type_=UTCDateTime()))
    )
    with transaction(engine, write=True) as conn:
        conn.rowcount(mark, {"runner": runners[1], "seen": seen})
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT CAST(last_seen_at AS TEXT) FROM runners WHERE id IN "
            f"({runners[0]}, {runners[1]}) ORDER BY id"
        ).scalars()
        orm_text, fast_text = list(stored)
    assert fast_text == orm_text


BACKEND = FastStatement(select(func.pg_backend_pid()))


def _end_the_backend(engine: Engine) -> int:
    """The pooled connection's PostgreSQL backend ends (a restart or an administrator)."""
    with transaction(engine) as conn:
        pid = conn.scalar(BACKEND)
    other = create_engine(engine.url, poolclass=NullPool)
    with other.connect() as conn:
        ended = conn.execute(select(func.pg_terminate_backend(pid))).scalar()
    other.dispose()
    assert ended
    return int(pid)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_idle_a_while_is_checked_and_replaced_if_broken(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    old = _end_the_backend(engine)
    with transaction(engine) as conn:
        assert conn.scalar(BACKEND) != old


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_that_breaks_in_use_fails_once_and_is_not_reused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Used a moment ago, so not checked: the statement finds it broken.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    old = _end_the_backend(engine)
    with pytest.raises(OperationalError) as raised, transaction(engine) as conn:
        conn.scalar(BACKEND)
    # Answered 503 with Retry-After, for the client to retry.
    assert raised.value.connection_invalidated
    response = database_error_response(raised.value)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    with transaction(engine) as conn:
        assert conn.scalar(BACKEND) != old


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_read_on_postgresql_runs_each_statement_alone_and_a_write_stays_one_transaction(
    engine: Engine, runners: list[int]
) -> None:
    # A read has no BEGIN (a round trip, and another for COMMIT): each statement is a
    # transaction of its own, whose start is the statement's own.
    with transaction(engine) as conn:
        start = FastStatement(select(func.transaction_timestamp()))
        first, second = conn.scalar(start), conn.scalar(start)
    assert first < second
    # The connection goes back to the pool as it came: a write after it is still atomic.
    rename = FastStatement(
        update(Runner).where(col(Runner.id) == bindparam("runner")).values(name=bindparam("name"))
    )
    with pytest.raises(IntegrityError), transaction(engine, write=True) as conn:
        assert conn.rowcount(rename, {"runner": runners[0], "name": "renamed"}) == 1
        conn.rowcount(rename, {"runner": runners[1], "name": "r2"})  # taken: unique
    with transaction(engine, write=True) as conn:
        start = FastStatement(select(func.transaction_timestamp()))
        assert conn.scalar(start) == conn.scalar(start)  # one transaction
        assert conn.scalar(FastStatement(select(func.count()).where(col(Runner.name) == "r0")))
    pooled = engine.raw_connection()
    try:
        assert pooled.dbapi_connection is not None
        assert pooled.dbapi_connection.autocommit is False
    finally:
        pooled.close()
