"""Database engine, sessions and migrations.

SQLite gets WAL, a busy timeout, foreign keys, and explicit ``BEGIN`` statements so that the
scheduler can take the write lock up front with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.pool import Pool
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
BEGIN_MODE = "framefarm_begin"
_HOLDS_WRITER = "framefarm_holds_writer"
"""Execution option: ``"IMMEDIATE"`` makes a SQLite transaction take the write lock at once."""
_WRITERS: weakref.WeakKeyDictionary[Pool, threading.Lock] = weakref.WeakKeyDictionary()


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20
) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            # Requests queue for SQLite's single write lock anyway; enough connections that
            # they queue there and not for a connection (threads cap concurrency at 40).
            pool_size=20,
            max_overflow=30,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow)
    _ping_after_idle(engine)
    return engine


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle longer than this is pinged before it is used."""


def _ping_after_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle (after a database restart).

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip more for each of a
    claim's transactions, a sixth of the manager's time under load. A connection used a moment
    ago is known good; one that breaks in use is thrown away by the pool (the ORM's) or by
    ``manager.fastsql.transaction``, and the request is answered 503, to be retried.
    """

    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool replaces the connection and tries again.
            raise DisconnectionError(f"a pooled connection was broken: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # SQLite has one write lock. Writers of this process queue for it on a mutex, in order,
    # instead of polling SQLite's busy handler (whose growing sleeps turn a queue of writers
    # into a convoy); other processes (the CLI) are still covered by the busy timeout.
    writer = _WRITERS[engine.pool] = threading.Lock()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_MODE, "")
        if mode == "IMMEDIATE":
            if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked"))
            conn.info[_HOLDS_WRITER] = True
        try:
            conn.exec_driver_sql(f"BEGIN {mode}".strip())
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Connection) -> None:
        if conn.info.pop(_HOLDS_WRITER, False):
            writer.release()

    @event.listens_for(engine, "commit")
    def on_commit(conn: Connection) -> None:
        _release(conn)

    @event.listens_for(engine, "rollback")
    def on_rollback(conn: Connection) -> None:
        _release(conn)


def sqlite_writer(engine: Engine) -> threading.Lock:
    """The mutex this process's SQLite writers queue on (one per database, shared by the
    engine's variants with other execution options)."""
    return _WRITERS[engine.pool]


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


ANALYZE_SHARE = 0.1
"""A job that adds more than this share of the tasks table refreshes PostgreSQL's statistics."""


def refresh_statistics_after(session: Session, new_tasks: int) -> bool:
    """On PostgreSQL, read the task and job tables' statistics again at once when ``new_tasks``
    (just committed) change the tasks table by more than a tenth.

    The claim's plan rests on them. With statistics from when the tables were nearly empty,
    PostgreSQL joined every job with every queued task to find the best job: 8–14 s per
    claim under load, holding every runner's requests up, until autovacuum analysed the
    table on its own a minute or more later. Returns whether it analysed.
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or new_tasks <= 0:
        return False
    known = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'tasks'::regclass")
    ).scalar_one()
    if known >= 0 and new_tasks <= ANALYZE_SHARE * known:
        return False
    session.execute(text("ANALYZE tasks, jobs"))
    session.commit()
    return True
