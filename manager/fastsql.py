"""The runner API's hot path: Core statements compiled once, run on the DBAPI connection.

Claims and completions are a handful of small statements each, made hundreds of times a
second on a busy farm. Through SQLAlchemy's execution machinery (cache keys, execution
contexts, result objects, events) one such statement costs about ten times what the
database needs for it (77 µs against 6 µs on SQLite, measured on the 2-core test machine).
Here a statement is still written with SQLAlchemy Core, so it stays one definition for
SQLite and PostgreSQL, but it is compiled once per database and parameter shape, and then
run straight on the driver's cursor, with the same type conversions SQLAlchemy would apply.

Transactions come from ``transaction``: on SQLite a writing one queues on the same
in-process mutex as the ORM's ``BEGIN IMMEDIATE`` (``manager.db.sqlite_writer``), so both
paths share one orderly queue for the write lock. Driver errors are raised as SQLAlchemy's
exceptions, so the API's error handlers (503 for a busy database) see the same thing either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from manager.db import SQLITE_BUSY_TIMEOUT_MS, is_sqlite, sqlite_writer

Params = Mapping[str, Any]


@dataclass(frozen=True)
class _Plan:
    """One statement for one database and one length of each list parameter."""

    sql: str
    positional: bool
    # (driver's name for the value, caller's name or None for a constant, list index or
    # None, bind processor or None, constant value)
    slots: tuple[tuple[str, str | None, int | None, Any, Any], ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, params: Params) -> Sequence[Any] | dict[str, Any]:
        values = []
        for _name, source, index, processor, constant in self.slots:
            if source is None:
                values.append(constant)
                continue
            value = params[source] if index is None else params[source][index]
            values.append(processor(value) if processor is not None else value)
        if self.positional:
            return values
        return {slot[0]: value for slot, value in zip(self.slots, values, strict=True)}

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if convert is None or value is None else convert(value)
            for convert, value in zip(self.results, row, strict=True)
        )


class FastStatement:
    """A Core statement run on the driver's cursor; lists are parameters named in ``lists``."""

    def __init__(self, statement: ClauseElement, lists: Sequence[str] = ()) -> None:
        self.statement = statement
        self.lists = tuple(lists)
        self._plans: dict[tuple[str, tuple[int, ...], frozenset[str]], _Plan] = {}
        self._lock = threading.Lock()

    def plan(self, dialect: Dialect, params: Params) -> _Plan:
        # (which parameters the caller gives is part of the plan: the others are constants)
        shape = tuple(len(params[name]) for name in self.lists)
        key = (dialect.name, shape, frozenset(params))
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or self._compile(dialect, params)
                self._plans[key] = plan
        return plan

    def _compile(self, dialect: Dialect, params: Params) -> _Plan:
        compiled = self.statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        expanded = compiled.construct_expanded_state(dict(params))
        origin: dict[str, tuple[str | None, int | None]] = {name: (name, None) for name in params}
        for name, names in expanded.parameter_expansion.items():
            for position, expanded_name in enumerate(names):
                origin[expanded_name] = (name, position if name in self.lists else None)
        order = (
            list(expanded.positiontup)
            if expanded.positiontup is not None
            else list(expanded.parameters)
        )
        # SQLAlchemy's conversions (a timestamp to SQLite's text, say), for every value
        # bound, under its own name and the names of a list's expanded items.
        processors: dict[str, Any] = {}
        for bound_name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[bound_name] = processor
                for item_name in expanded.parameter_expansion.get(bound_name, ()):
                    processors[item_name] = processor
        slots = []
        for name in order:
            processor = processors.get(name)
            source, index = origin.get(name, (None, None))
            if source is not None and source not in params:
                source = None
            if source is not None and index is None and name != source:
                # An expanded list given whole by the caller but not declared in ``lists``.
                raise ValueError(f"list parameter {source!r} must be named in lists=")
            constant = None
            if source is None:
                constant = expanded.parameters[name]
                if processor is not None and constant is not None:
                    constant = processor(constant)
            slots.append((name, source, index, processor, constant))
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in _result_columns(self.statement)
        )
        return _Plan(expanded.statement, expanded.positiontup is not None, tuple(slots), results)


def _result_columns(statement: ClauseElement) -> Sequence[Any]:
    columns = getattr(statement, "selected_columns", None)
    if columns is None:
        columns = getattr(statement, "exported_columns", None)
    return list(columns) if columns is not None else []


class FastConnection:
    """A DBAPI connection inside a transaction, running ``FastStatement``s."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect) -> None:
        self._connection = dbapi_connection
        self._dialect = dialect

    def _run(self, statement: FastStatement, params: Params) -> tuple[Any, _Plan]:
        plan = statement.plan(self._dialect, params)
        parameters = plan.parameters(params)
        cursor = self._connection.cursor()
        try:
            cursor.execute(plan.sql, parameters)
        except self._dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _wrapped(exc, plan.sql, parameters, self._dialect) from exc
        return cursor, plan

    def all(self, statement: FastStatement, params: Params | None = None) -> list[tuple[Any, ...]]:
        cursor, plan = self._run(statement, params or {})
        try:
            return [plan.convert(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def first(
        self, statement: FastStatement, params: Params | None = None
    ) -> tuple[Any, ...] | None:
        cursor, plan = self._run(statement, params or {})
        try:
            row = cursor.fetchone()
            if row is not None:
                cursor.fetchall()  # (finish the statement: SQLite's RETURNING needs it)
            return None if row is None else plan.convert(row)
        finally:
            cursor.close()

    def scalar(self, statement: FastStatement, params: Params | None = None) -> Any:
        row = self.first(statement, params)
        return None if row is None else row[0]

    def rowcount(self, statement: FastStatement, params: Params | None = None) -> int:
        cursor, _ = self._run(statement, params or {})
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


def _wrapped(exc: Exception, sql: str, parameters: Any, dialect: Dialect) -> StatementError:
    return DBAPIError.instance(sql, parameters, exc, dialect.loaded_dbapi.Error)


class WouldWait(Exception):
    """A transaction that must not wait (``without_waiting``) found SQLite's writer busy."""


SHORT_WAIT_S = 0.002
"""How long a transaction inside ``without_waiting`` may still wait for this process's writer."""

_NO_WAITING: ContextVar[bool] = ContextVar("fastsql_no_waiting", default=False)


def may_wait() -> bool:
    """False inside ``without_waiting``."""
    return not _NO_WAITING.get()


@contextmanager
def without_waiting() -> Iterator[None]:
    """Within this block a writing SQLite transaction raises ``WouldWait`` instead of waiting.

    For work run on the event loop itself (``manager.hot_lane``): the loop must never sleep
    on a lock another thread or process holds.
    """
    token = _NO_WAITING.set(True)
    try:
        yield
    finally:
        _NO_WAITING.reset(token)


@contextmanager
def transaction(
    engine: Engine, *, write: bool = False, alone: bool = False
) -> Iterator[FastConnection]:
    """A transaction on a pooled connection; committed on success, rolled back on error.

    On SQLite a writing transaction takes the write lock up front (``BEGIN IMMEDIATE``) after
    queueing on this process's writer mutex; a reading one is a consistent snapshot. On
    PostgreSQL a reading one runs each statement on its own (autocommit). Inside
    ``without_waiting`` a writing one raises ``WouldWait`` rather than queue, before it has
    changed anything. ``alone``: every statement of the block is atomic by itself, so on
    PostgreSQL a writing one runs each on its own too (SQLite still queues for its lock).
    """
    pooled = engine.raw_connection()
    dbapi_connection = pooled.dbapi_connection
    assert dbapi_connection is not None
    writer: threading.Lock | None = None
    # On PostgreSQL (READ COMMITTED) every statement of a transaction reads a snapshot of its
    # own anyway: a read without BEGIN and COMMIT is one round trip instead of three.
    each_alone = (not write or alone) and not is_sqlite(engine)
    try:
        if each_alone:
            dbapi_connection.autocommit = True
        elif is_sqlite(engine):
            if write:
                writer = sqlite_writer(engine)
                if _NO_WAITING.get():
                    if not writer.acquire(timeout=SHORT_WAIT_S):
                        writer = None
                        raise WouldWait
                    _begin_without_waiting(dbapi_connection, engine.dialect)
                else:
                    if not writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                        writer = None
                        raise OperationalError(
                            "BEGIN IMMEDIATE", None, Exception("database is locked")
                        )
                    _begin(dbapi_connection, "BEGIN IMMEDIATE", engine.dialect)
            else:
                _begin(dbapi_connection, "BEGIN", engine.dialect)
        try:
            yield FastConnection(dbapi_connection, engine.dialect)
        except BaseException as exc:
            _roll_back(pooled, exc, engine.dialect)
            raise
        try:
            dbapi_connection.commit()
        except engine.dialect.loaded_dbapi.Error as exc:
            _roll_back(pooled, exc, engine.dialect)
            raise _wrapped(exc, "COMMIT", (), engine.dialect) from exc
    finally:
        if writer is not None:
            writer.release()
        if each_alone and pooled.dbapi_connection is not None:
            with suppress(engine.dialect.loaded_dbapi.Error):  # (the pool drops a broken one)
                pooled.dbapi_connection.autocommit = False
        pooled.close()


def _roll_back(pooled: Any, exc: BaseException, dialect: Dialect) -> None:
    """Roll back; a connection the error shows broken (the database restarted) is discarded."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(cause, dialect.loaded_dbapi.Error) and dialect.is_disconnect(cause, pooled, None):
        pooled.invalidate(cause)
        if isinstance(exc, DBAPIError):
            exc.connection_invalidated = True  # (answered 503: see ``manager.errors``)
        return
    try:
        pooled.dbapi_connection.rollback()
    except dialect.loaded_dbapi.Error as broken:
        pooled.invalidate(broken)


def _begin(dbapi_connection: Any, sql: str, dialect: Dialect) -> None:
    try:
        dbapi_connection.execute(sql)
    except dialect.loaded_dbapi.Error as exc:
        raise _wrapped(exc, sql, (), dialect) from exc


def _begin_without_waiting(dbapi_connection: Any, dialect: Dialect) -> None:
    """``BEGIN IMMEDIATE`` that gives up at once when another process holds the write lock."""
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    except dialect.loaded_dbapi.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise WouldWait from exc
        raise _wrapped(exc, "BEGIN IMMEDIATE", (), dialect) from exc
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
