"""The runner API's hot path: a claim attempt, a heartbeat, a progress report.

The endpoints are async (a claim waits in a long poll); everything that touches the
database for one of them runs here, in one call through ``manager.hot_lane``, on statements
compiled once (``manager.fastsql``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    String,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlmodel import Session, col

from manager.db import is_sqlite
from manager.errors import Conflict, Forbidden, NotFound
from manager.fastsql import FastConnection, FastStatement, Params, transaction
from manager.models import (
    ApiKey,
    Job,
    JobFile,
    Runner,
    Task,
    UTCDateTime,
    utcnow,
)
from manager.scheduler import ClaimingRunner, any_task_runnable, claim
from manager.schemas import ClaimedJob, ClaimedTask, JobFilePublic, ProgressReply, TaskProgress
from shared.wire import JobStatus, RunnerStatus, TaskStatus

log = logging.getLogger(__name__)
FRESH = timedelta(seconds=1)
"""A claiming runner's row is rewritten (status, last seen) at most this often."""


def runner_for(session: Session, runner_id: int, key: ApiKey) -> Runner:
    runner = session.get(Runner, runner_id)
    check_runner(runner_id, runner is not None, runner.api_key_id if runner else None, key)
    assert runner is not None
    return runner


def check_runner(runner_id: int, found: bool, api_key_id: int | None, key: ApiKey) -> None:
    if not found:
        raise NotFound(f"no runner {runner_id}; register again", code="runner_not_found")
    if api_key_id != key.id:
        raise Forbidden("this runner was registered with another API key", code="wrong_runner_key")


def seen(session: Session, runner: Runner, lease_seconds: float) -> None:
    """The runner is alive: keep it online and extend the leases of its tasks."""
    now = utcnow()
    runner.last_seen_at = now
    if runner.status == RunnerStatus.OFFLINE:
        runner.status = RunnerStatus.IDLE.value
    session.add(runner)
    session.execute(
        update(Task)
        .where(col(Task.runner_id) == runner.id, col(Task.status) == TaskStatus.ACTIVE.value)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )


def stop_reason(job_status: str) -> str | None:
    """Why a runner must stop a task of a job in ``job_status`` now, or None to keep going."""
    if job_status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELED):
        return "the job was canceled"
    if job_status in (JobStatus.PAUSE_REQUESTED, JobStatus.PAUSED):
        return "the job was paused"
    if job_status == JobStatus.FAILED:
        return "the job failed"
    return None


def active_task(
    session: Session, runner: Runner, task_id: int, *, stopping_ok: bool = False
) -> tuple[Task, Job]:
    """The runner's active task; 409 if it is not (or, unless ``stopping_ok``, must stop)."""
    task = session.get(Task, task_id)
    job = session.get(Job, task.job_id) if task is not None else None
    check_active(
        task_id,
        runner.id,
        runner.name,
        task.runner_id if task else None,
        task.status if task else None,
        job.status if job else None,
        stopping_ok=stopping_ok,
    )
    assert task is not None and job is not None
    return task, job


def check_active(
    task_id: int,
    runner_id: int | None,
    runner_name: str,
    task_runner_id: int | None,
    task_status: str | None,
    job_status: str | None,
    *,
    stopping_ok: bool = False,
) -> None:
    """Raise unless the task (None: missing) is the runner's, active, and its job goes on."""
    if task_status is None:
        raise NotFound(f"no task {task_id}", code="task_not_found")
    if task_runner_id != runner_id:
        raise Conflict(f"task {task_id} is not assigned to runner {runner_name}", code="not_yours")
    if task_status != TaskStatus.ACTIVE:
        raise Conflict(
            f"task {task_id} is {task_status}; stop working on it", code="task_not_active"
        )
    assert job_status is not None
    stop = stop_reason(job_status)
    if stop is not None and not stopping_ok:
        raise Conflict(f"{stop}; stop working on task {task_id}", code="task_not_active")


@cache
def _claiming_runner() -> FastStatement:
    return FastStatement(
        select(*(col(getattr(Runner, field.name)) for field in fields(ClaimingRunner))).where(
            col(Runner.id) == bindparam("runner_id")
        )
    )


def claiming_runner(engine: Engine, runner_id: int, key: ApiKey) -> ClaimingRunner:
    """The runner, read for its claims; 404 or 403 as ``runner_for``."""
    with transaction(engine) as conn:
        row = conn.first(_claiming_runner(), {"runner_id": runner_id})
    runner = ClaimingRunner(*row) if row is not None else None
    check_runner(runner_id, runner is not None, runner.api_key_id if runner else None, key)
    assert runner is not None
    return runner


def attempt_claim(
    engine: Engine,
    runner_id: int,
    key: ApiKey,
    runner: ClaimingRunner | None,
    lease_seconds: float,
    woken: bool = False,
    warm_job_id: int | None = None,
) -> tuple[ClaimingRunner, ClaimedTask | None, bool]:
    """One claim attempt: the runner (read on the first), kept online, and its new task.

    The flag says, when a ``woken`` runner got nothing, whether another runner might take
    what there is (then the wake-up goes on); usually a runner that finished a task took
    its successor itself, and waking every waiting runner in turn would be wasted.
    """
    if runner is None:
        runner = claiming_runner(engine, runner_id, key)
    now = utcnow()
    # A claim is a sign of life: written down with the claim itself, at most once a second
    # while nothing is claimed (leases are extended by heartbeats and reports).
    stale = runner.status != RunnerStatus.IDLE or not (
        runner.last_seen_at is not None and now - runner.last_seen_at < FRESH
    )
    claimed = claim(
        engine, runner, lease_seconds=lease_seconds, now=now, seen=stale, warm_job_id=warm_job_id
    )
    if claimed is None:
        if stale:
            runner.status, runner.last_seen_at = RunnerStatus.IDLE.value, now
        return runner, None, woken and any_task_runnable(engine)
    if claimed.details is not None:  # (PostgreSQL: read by the claim itself)
        return runner, _claimed_task(claimed.task_id, *claimed.details), False
    return runner, claimed_task(engine, claimed.task_id), False


@cache
def _claimed_task_queries() -> tuple[FastStatement, FastStatement]:
    task = (
        select(
            col(Task.name),
            col(Task.type),
            col(Task.frames),
            col(Task.commands),
            col(Task.attempts),
            col(Task.job_id),
            col(Job.name).label("job_name"),
            col(Job.priority),
            col(Job.blend_file),
            col(Job.blender_version),
            col(Job.settings),
        )
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(col(Task.id) == bindparam("task"))
    )
    files = select(col(JobFile.path), col(JobFile.sha256), col(JobFile.size)).where(
        col(JobFile.job_id) == bindparam("job")
    )
    return FastStatement(task), FastStatement(files)


def claimed_task(engine: Engine, task_id: int) -> ClaimedTask:
    """What the runner needs to know about the task it just claimed (a read, no lock)."""
    task_query, files_query = _claimed_task_queries()
    with transaction(engine) as conn:
        row = conn.first(task_query, {"task": task_id})
        assert row is not None
        files = conn.all(files_query, {"job": row[5]})
    name, type_, frames, commands, attempts, job_id = row[:6]
    job_name, priority, blend_file, blender_version, settings = row[6:]
    return _claimed_task(
        task_id, job_id, name, type_, frames, commands, attempts,
        job_name, priority, blend_file, blender_version, settings, files,
    )  # fmt: skip


def _claimed_task(
    task_id: int,
    job_id: int,
    name: str,
    type_: str,
    frames: list[int],
    commands: list[Any],
    attempts: int,
    job_name: str,
    priority: int,
    blend_file: str,
    blender_version: str,
    settings: dict[str, Any],
    files: Sequence[Sequence[Any]],
) -> ClaimedTask:
    """The answer to a claim: the columns of ``scheduler.CLAIMED_TASK_COLUMNS`` and
    ``CLAIMED_JOB_COLUMNS``, and the job's files as (path, sha256, size)."""
    return ClaimedTask(
        id=task_id,
        name=name,
        type=type_,
        frames=list(frames),
        commands=list(commands),
        attempt=attempts,
        job=ClaimedJob(
            id=job_id,
            name=job_name,
            priority=priority,
            blend_file=blend_file,
            blender_version=blender_version,
            settings=dict(settings),
            files=[JobFilePublic(path=p, sha256=s, size=n) for p, s, n in files],
        ),
    )


STOPPING = [
    s.value
    for s in (
        JobStatus.CANCEL_REQUESTED,
        JobStatus.CANCELED,
        JobStatus.PAUSE_REQUESTED,
        JobStatus.PAUSED,
        JobStatus.FAILED,
    )
]
"""Job states in which ``stop_reason`` tells a runner to stop its tasks."""


@cache
def _heartbeat_statements() -> tuple[FastStatement, FastStatement, FastStatement, FastStatement]:
    key_of, mark_seen, extend, stopping = _heartbeat_sql()
    return (
        FastStatement(key_of),
        FastStatement(mark_seen),
        FastStatement(extend),
        FastStatement(stopping),
    )


def _heartbeat_sql() -> tuple[Any, Any, Any, Any]:
    """Built afresh for each use (a statement that has been run keeps the columns it had
    then, and one built on it would inherit them)."""
    now = bindparam("now", type_=UTCDateTime())
    key_of = select(col(Runner.api_key_id)).where(col(Runner.id) == bindparam("runner"))
    mark_seen = (
        update(Runner)
        .where(col(Runner.id) == bindparam("runner"))
        .values(
            last_seen_at=now,
            status=case(
                (col(Runner.status) == RunnerStatus.OFFLINE.value, RunnerStatus.IDLE.value),
                else_=col(Runner.status),
            ),
        )
    )
    # The leases of the runner's tasks, skipping (on PostgreSQL) a task another transaction
    # holds: that is the runner's own completion or progress report, which settles the task
    # or extends its lease itself. Waiting for it instead, while holding the runner's row that
    # the completion takes next, deadlocked the two (PostgreSQL broke one after a second).
    held = (
        select(col(Task.id))
        .where(
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
        )
        .with_for_update(skip_locked=True)
    )
    extend = (
        update(Task)
        .where(col(Task.id).in_(held.scalar_subquery()))
        .values(lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()))
    )
    stopping = (
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
            col(Job.status).in_(STOPPING),
        )
        .order_by(col(Task.id))
    )
    return key_of, mark_seen, extend, stopping


def _alive_params(runner_id: int, lease_seconds: float) -> dict[str, Any]:
    now = utcnow()
    return {
        "runner": runner_id,
        "now": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }


def _mark_alive(conn: FastConnection, runner_id: int, key: ApiKey, params: Params) -> None:
    """The runner (checked against ``key``) is online and its task leases are extended."""
    key_of, mark_seen, extend, _ = _heartbeat_statements()
    row = conn.first(key_of, params)
    check_runner(runner_id, row is not None, row[0] if row else None, key)
    conn.rowcount(mark_seen, params)
    conn.rowcount(extend, params)


def _alive_in_one(key_matches: Any, skip_task: Any = None) -> tuple[Any, Any]:
    """``_mark_alive`` as two data-modifying CTEs of a PostgreSQL statement: the runner
    marked seen if ``key_matches``, and then the leases of its tasks (but ``skip_task``)."""
    _, mark_seen, extend, _ = _heartbeat_sql()
    seen = mark_seen.where(key_matches).returning(col(Runner.id)).cte("seen")
    extend_sql = extend.where(exists(select(seen.c.id)))
    if skip_task is not None:
        extend_sql = extend_sql.where(col(Task.id) != skip_task)
    return seen, extend_sql.cte("extended")


@cache
def _postgres_beat() -> FastStatement:
    """The heartbeat as one PostgreSQL statement: the runner's key, and (with the right key)
    the runner seen, its leases extended and the tasks it must stop."""
    *_, stopping = _heartbeat_sql()
    seen, extended = _alive_in_one(col(Runner.api_key_id) == bindparam("key_id"))
    stop = select(func.array_agg(stopping.subquery().c.id)).scalar_subquery()
    return FastStatement(
        select(col(Runner.api_key_id), stop)
        .where(col(Runner.id) == bindparam("runner"))
        .add_cte(seen, extended)
    )


def beat(engine: Engine, runner_id: int, key: ApiKey, lease_seconds: float) -> list[int]:
    """A heartbeat: the runner is online, its leases extended; the tasks it must stop now."""
    *_, stopping = _heartbeat_statements()
    params = _alive_params(runner_id, lease_seconds)
    if not is_sqlite(engine):  # one round trip
        with transaction(engine, write=True, alone=True) as conn:
            row = conn.first(_postgres_beat(), {**params, "key_id": key.id})
        check_runner(runner_id, row is not None, row[0] if row else None, key)
        assert row is not None
        return sorted(row[1] or [])
    with transaction(engine, write=True) as conn:
        _mark_alive(conn, runner_id, key, params)
        return [task_id for (task_id,) in conn.all(stopping, params)]


GONE = "the task was canceled or handed to another runner"


@cache
def _progress_statements() -> tuple[FastStatement, FastStatement]:
    task, record = _progress_sql()
    return FastStatement(task), FastStatement(record)


def _progress_sql() -> tuple[Any, Any]:
    """Built afresh for each use (see ``_heartbeat_sql``)."""
    task = (
        select(
            col(Task.runner_id),
            col(Task.status),
            col(Task.job_id),
            col(Task.frames),
            col(Job.status),
        )
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(col(Task.id) == bindparam("task"))
    )
    now = bindparam("now", type_=UTCDateTime())
    record = (
        update(Task)
        .where(col(Task.id) == bindparam("task"))
        .values(
            frames_done=func.coalesce(
                cast(bindparam("frames_done", type_=Integer()), Integer), col(Task.frames_done)
            ),
            activity=func.coalesce(
                cast(bindparam("activity", type_=String()), String), col(Task.activity)
            ),
            updated_at=now,
            last_progress_at=now,
        )
    )
    return task, record


@cache
def _postgres_progress() -> FastStatement:
    """The progress report as one PostgreSQL statement: the runner's key and the task's row
    (as ``_progress_statements`` reads them), and, with the right key, the runner seen, its
    other tasks' leases extended, and this one's extended with its frames done and activity
    recorded, if it is the runner's and active (the record only while its job goes on)."""
    task_row, _ = _progress_sql()
    seen, extended = _alive_in_one(
        col(Runner.api_key_id) == bindparam("key_id"), skip_task=bindparam("task")
    )
    task = task_row.subquery("task")
    goes_on = exists().where(col(Job.id) == col(Task.job_id), col(Job.status).not_in(STOPPING))
    now = bindparam("now", type_=UTCDateTime())

    def while_going(value: Any, column: Any) -> Any:
        return case((goes_on, value), else_=column)

    reported = func.coalesce(
        cast(bindparam("frames_done", type_=Integer()), Integer), col(Task.frames_done)
    )
    recorded = (
        update(Task)
        .where(
            col(Task.id) == bindparam("task"),
            col(Task.runner_id) == bindparam("runner"),
            col(Task.status) == TaskStatus.ACTIVE.value,
            exists(select(seen.c.id)),
        )
        .values(
            lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()),
            frames_done=while_going(
                func.least(reported, func.json_array_length(col(Task.frames))),
                col(Task.frames_done),
            ),
            activity=while_going(
                func.coalesce(
                    cast(bindparam("activity", type_=String()), String), col(Task.activity)
                ),
                col(Task.activity),
            ),
            updated_at=while_going(now, col(Task.updated_at)),
            last_progress_at=while_going(now, col(Task.last_progress_at)),
        )
        .returning(col(Task.id))
        .cte("recorded")
    )
    return FastStatement(
        select(col(Runner.api_key_id), *task.c)
        .select_from(Runner)
        .outerjoin(task, literal(True))
        .where(col(Runner.id) == bindparam("runner"))
        .add_cte(seen, extended, recorded)
    )


def report_progress(
    engine: Engine,
    runner_id: int,
    key: ApiKey,
    task_id: int,
    report: TaskProgress,
    lease_seconds: float,
    log_path: Callable[[int, int], Path],
) -> ProgressReply:
    """A progress report: the runner is alive (as by a heartbeat), the task's frames done,
    activity and log recorded; the answer says whether to keep running it."""
    task_row, record = _progress_statements()
    params = {**_alive_params(runner_id, lease_seconds), "task": task_id}
    if not is_sqlite(engine):  # one round trip
        return _progress_on_postgresql(engine, runner_id, key, task_id, report, params, log_path)
    with transaction(engine, write=True) as conn:
        _mark_alive(conn, runner_id, key, params)
        found = conn.first(task_row, params)
        if found is None or found[0] != runner_id or found[1] != TaskStatus.ACTIVE:
            return ProgressReply(keep_running=False, reason=GONE)
        _, _, job_id, frames, job_status = found
        if report.log:
            append_log(log_path(job_id, task_id), report.log)
        stop = stop_reason(job_status)
        if stop is not None:
            return ProgressReply(keep_running=False, reason=stop)
        frames_done = None if report.frames_done is None else min(report.frames_done, len(frames))
        params.update(frames_done=frames_done, activity=report.activity)
        conn.rowcount(record, params)
    return ProgressReply(keep_running=True)


def _progress_on_postgresql(
    engine: Engine,
    runner_id: int,
    key: ApiKey,
    task_id: int,
    report: TaskProgress,
    params: dict[str, Any],
    log_path: Callable[[int, int], Path],
) -> ProgressReply:
    params.update(key_id=key.id, frames_done=report.frames_done, activity=report.activity)
    with transaction(engine, write=True, alone=True) as conn:
        row = conn.first(_postgres_progress(), params)
    check_runner(runner_id, row is not None, row[0] if row else None, key)
    assert row is not None
    task_runner, task_status, job_id, _, job_status = row[1:]
    if task_runner != runner_id or task_status != TaskStatus.ACTIVE:
        return ProgressReply(keep_running=False, reason=GONE)
    if report.log:
        append_log(log_path(job_id, task_id), report.log)
    stop = stop_reason(job_status)
    if stop is not None:
        return ProgressReply(keep_running=False, reason=stop)
    return ProgressReply(keep_running=True)


def append_log(path: Path, lines: list[str]) -> None:
    """Add ``lines`` to a task's log; its folder is made by the first report only (every
    report with log lines comes here, so no mkdir each time)."""
    text = "".join(line.rstrip("\n") + "\n" for line in lines)
    try:
        _append(path, text)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        _append(path, text)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
