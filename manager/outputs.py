"""Recording an output a runner uploads: checked by one read, written by one statement.

Every rendered frame is an upload, so this runs once per frame like a completion; it uses
the completion's compiled check (the runner, its active task, the task's job) and an upsert
(an output uploaded again, by a retry or a new attempt, replaces the one of that name).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Engine, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from manager.completion import CHECKED, completion_check
from manager.dispatch import check_active, check_runner
from manager.fastsql import FastStatement, transaction
from manager.models import ApiKey, Output, UTCDateTime, utcnow


def job_of_active_task(engine: Engine, runner_id: int, key: ApiKey, task_id: int) -> int:
    """The job of the runner's active task, which it may upload outputs for (a read)."""
    with transaction(engine) as conn:
        row = conn.first(completion_check(), {"runner": runner_id, "task": task_id})
    check_runner(runner_id, row is not None, row[0] if row else None, key)
    assert row is not None
    _, runner_name, task_runner_id, task_status, _, _, _, job_id, job_status = row[:CHECKED]
    check_active(task_id, runner_id, runner_name, task_runner_id, task_status, job_status)
    return int(job_id)


@cache
def _upsert(dialect: str) -> FastStatement:
    values = {
        "job_id": bindparam("job_id"),
        "task_id": bindparam("task_id"),
        "name": bindparam("name"),
        "frame": bindparam("frame"),
        "size": bindparam("size"),
        "sha256": bindparam("sha256"),
        "created_at": bindparam("now", type_=UTCDateTime()),
    }
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Output)
    statement = insert.values(values)
    replaced = {
        name: getattr(statement.excluded, name)
        for name in ("task_id", "frame", "size", "sha256", "created_at")
    }
    return FastStatement(
        statement.on_conflict_do_update(index_elements=["job_id", "name"], set_=replaced)
    )


def record_output(
    engine: Engine, job_id: int, task_id: int, name: str, frame: int | None, size: int, sha: str
) -> None:
    """Note the output (stored already), replacing an earlier one of the same name."""
    params = {
        "job_id": job_id,
        "task_id": task_id,
        "name": name,
        "frame": frame,
        "size": size,
        "sha256": sha,
        "now": utcnow(),
    }
    with transaction(engine, write=True) as conn:
        conn.rowcount(_upsert(engine.dialect.name), params)
