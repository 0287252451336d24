"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import manager.models  # noqa: F401
from manager.db import make_engine, migrate
from manager.settings import database_url as sqlite_url


def test_migrations_match_the_models(database_url: str):
    engine = make_engine(database_url)
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
        tables = set(inspect(conn).get_table_names())
    assert {"jobs", "tasks", "runners", "blobs", "outputs", "api_keys", "users"} <= tables
    migrate(engine)  # applying again is a no-op
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path):
    engine = make_engine(sqlite_url(str(tmp_path / "m.db")))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
