"""Claiming: which task a runner gets next. One function, one atomic statement."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Engine,
    Select,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import Alias
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import col

from manager.db import is_sqlite
from manager.fastsql import FastStatement, may_wait, transaction
from manager.models import (
    RUNNABLE_JOB_STATES,
    Job,
    JobBlocklist,
    JobFile,
    JobPin,
    Runner,
    Task,
    TaskFailure,
    UTCDateTime,
    utcnow,
)
from manager.states import JOB_RUNNABLE, TASK_RUNNABLE
from shared.wire import JobStatus, RunnerStatus, TaskStatus

log = logging.getLogger(__name__)


def _task_conditions(task: Any) -> list[Any]:
    """What a task itself must be for the runner in the bind parameters to take it."""
    failed_here = exists().where(
        col(TaskFailure.task_id) == task.id, col(TaskFailure.runner_id) == bindparam("runner_id")
    )
    return [
        task.status.in_([s.value for s in TASK_RUNNABLE]),
        # Kept by triggers (migration 0005): an indexed column instead of looking at the
        # dependencies of every queued task, most of which wait in a long queue.
        task.pending_dependencies == 0,
        task.type.in_(bindparam("task_types", expanding=True)),
        or_(
            task.capability.is_(None),
            task.capability.in_(bindparam("capabilities", expanding=True)),
        ),
        not_(failed_here),
    ]


def _job_runnable(job: Any) -> Any:
    """``RUNNABLE_JOBS_SQL`` for ``job``, with the states as literals (see ``ix_jobs_runnable``)."""
    return col(job.status).in_([literal_column(repr(state)) for state in RUNNABLE_JOB_STATES])


def _job_conditions(job: Any = Job) -> list[Any]:
    """What the task's job must be for the runner: running, its tag, pins, blocklist."""
    blocklisted = exists().where(
        col(JobBlocklist.job_id) == col(job.id),
        col(JobBlocklist.runner_id) == bindparam("runner_id"),
    )
    pinned = exists().where(col(JobPin.job_id) == col(job.id))
    pinned_here = exists().where(
        col(JobPin.job_id) == col(job.id), col(JobPin.runner_name) == bindparam("runner_name")
    )
    return [
        _job_runnable(job),
        or_(col(job.tag).is_(None), col(job.tag).in_(bindparam("tags", expanding=True))),
        or_(not_(pinned), pinned_here),
        not_(blocklisted),
    ]


def _job_order() -> list[Any]:
    return [
        col(Job.priority).desc(),
        # The job whose scene the runner holds loaded in a Blender session, when it has one.
        case((col(Job.id) == bindparam("warm_job_id", None, required=False), 0), else_=1),
        col(Job.id),
    ]


def _anything_ready() -> Any:
    """Whether any task at all is ready: when none is (most wake-ups), no job is looked at."""
    ready = aliased(Task, name="ready")
    return exists().where(
        col(ready.status).in_([s.value for s in TASK_RUNNABLE]),
        col(ready.pending_dependencies) == 0,
    )


def runnable_tasks():  # type: ignore[no-untyped-def]
    """SELECT of runnable task ids for the runner in the bind parameters, best first.

    Parameters: ``runner_id``, ``runner_name``, ``warm_job_id``, and the lists
    ``task_types``, ``tags`` and ``capabilities``. Every runnable task is looked at: use
    ``best_job_first_task`` where only the best one is wanted.
    """
    return (
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(_anything_ready(), *_task_conditions(Task), *_job_conditions())
        .order_by(*_job_order(), col(Task.task_order), col(Task.id))
    )


class IndexedBy(Alias):
    """A table read through the index named: ``INDEXED BY`` on SQLite, an alias elsewhere.

    SQLite's planner, knowing nothing of how many jobs are in each state, reads the running
    jobs through ``ix_jobs_status`` and sorts them all, where walking ``ix_jobs_runnable``
    in order would stop at the first that fits. PostgreSQL plans from its statistics.
    """

    inherit_cache = True
    _traverse_internals = [*Alias._traverse_internals, ("index", InternalTraversal.dp_string)]
    index: str

    @classmethod
    def of(cls, table: Any, name: str, index: str) -> IndexedBy:
        alias = cls._construct(table, name=name)
        alias.index = index
        return alias


@compiles(IndexedBy)
def _plain_alias(element: IndexedBy, compiler: Any, **kw: Any) -> str:
    return str(compiler.visit_alias(element, **kw))


@compiles(IndexedBy, "sqlite")
def _indexed_by(element: IndexedBy, compiler: Any, **kw: Any) -> str:
    sql = str(compiler.visit_alias(element, **kw))
    return f"{sql} INDEXED BY {element.index}" if kw.get("asfrom") else sql


def _has_task_for_runner(job: Any) -> Any:
    eligible = aliased(Task, name="eligible")
    return (
        exists()
        .where(col(eligible.job_id) == col(job.id), *_task_conditions(eligible))
        .correlate(job)
    )


def best_job_first_task():  # type: ignore[no-untyped-def]
    """The same first task as ``runnable_tasks``, found without looking at every task.

    The running jobs are walked best first through ``ix_jobs_runnable`` (a farm has far fewer
    running jobs than queued tasks), each checked for one task the runner may take through
    the tasks' index, and the walk stops at the first job that has one; then that job's
    first such task. The job the runner keeps a Blender session for (``warm_job_id``) goes
    before it if it has a task for the runner and the same priority. When no task at all is
    ready the walk does not start. With 20,000 queued tasks this is what keeps a claim from
    scanning and sorting all of them while it holds SQLite's write lock.
    """
    jobs = Job.__table__  # type: ignore[attr-defined]
    runnable = aliased(Job, IndexedBy.of(jobs, "runnable_jobs", "ix_jobs_runnable"))
    first = (
        select(col(runnable.id), col(runnable.priority))
        .where(_anything_ready(), *_job_conditions(runnable), _has_task_for_runner(runnable))
        .order_by(col(runnable.priority).desc(), col(runnable.id))
        .limit(1)
        .subquery("first_job")
    )
    warm = aliased(Job, name="warm_job")
    warm_first = and_(
        col(warm.id) == bindparam("warm_job_id", None, required=False),
        col(warm.priority) == first.c.priority,
        *_job_conditions(warm),
        _has_task_for_runner(warm),
    )
    best_job = (
        select(func.coalesce(col(warm.id), first.c.id))
        .select_from(first.outerjoin(warm, warm_first))
        .correlate(None)
        .scalar_subquery()
    )
    return (
        select(col(Task.id))
        .where(col(Task.job_id) == best_job, *_task_conditions(Task))
        .order_by(col(Task.task_order), col(Task.id))
    )


@dataclass
class ClaimingRunner:
    """What claiming needs to know about a runner (read without the ORM on the hot path)."""

    id: int
    name: str
    api_key_id: int | None
    enabled: bool
    status: str
    last_seen_at: datetime | None
    task_types: list[str]
    tags: list[str]
    capabilities: list[str]


def runner_params(runner: Runner | ClaimingRunner) -> dict[str, Any]:
    return {
        "runner_id": runner.id,
        "runner_name": runner.name,
        "task_types": list(runner.task_types),
        "tags": list(runner.tags),
        "capabilities": list(runner.capabilities),
    }


RUNNER_LISTS = ("task_types", "tags", "capabilities")


@cache
def _probe() -> FastStatement:
    """Whether anything is runnable for the runner: a plain read, no lock."""
    return FastStatement(best_job_first_task().limit(1), lists=RUNNER_LISTS)


@cache
def _any_runnable() -> FastStatement:
    return FastStatement(
        select(col(Task.id))
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            col(Task.pending_dependencies) == 0,
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
        )
        .limit(1)
    )


def any_task_runnable(engine: Engine) -> bool:
    """Whether some runner, not necessarily a given one, could claim a task now (a read)."""
    with transaction(engine) as conn:
        return conn.first(_any_runnable()) is not None


def _claim(candidates: Select[Any]) -> Update:
    candidate = (
        candidates.limit(1)
        .with_for_update(skip_locked=True, of=Task)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    return (
        update(Task)
        .where(
            and_(
                col(Task.id) == candidate,
                # Re-checked by the UPDATE itself: on PostgreSQL a row can change between
                # the subquery's snapshot and the lock.
                col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            )
        )
        .values(
            status=TaskStatus.ACTIVE.value,
            runner_id=bindparam("runner_id"),
            attempts=Task.attempts + 1,  # type: ignore[operator]
            lease_expires_at=bindparam("lease_expires_at", type_=UTCDateTime()),
            started_at=bindparam("now", type_=UTCDateTime()),
            last_progress_at=bindparam("now", type_=UTCDateTime()),
            updated_at=bindparam("now", type_=UTCDateTime()),
            frames_done=0,
            activity=bindparam("activity"),
        )
        .returning(col(Task.id), col(Task.job_id))
    )


def _start_job() -> Update:
    return (
        update(Job)
        .where(col(Job.status) == JobStatus.QUEUED.value)
        .values(
            status=JobStatus.ACTIVE.value,
            started_at=bindparam("now", type_=UTCDateTime()),
            updated_at=bindparam("now", type_=UTCDateTime()),
            activity="rendering",
        )
    )


def _mark_runner(status: RunnerStatus) -> Update:
    return (
        update(Runner)
        .where(col(Runner.id) == bindparam("runner_id"))
        .values(status=status.value, last_seen_at=bindparam("now", type_=UTCDateTime()))
    )


def _claim_in_one(candidates: Select[Any]) -> Select[Any]:
    """The claim, its job started and its runner marked working, as one PostgreSQL statement
    (data-modifying CTEs): one round trip, atomic without a transaction around it."""
    claimed = (
        _claim(candidates)
        .returning(*(col(getattr(Task, name)) for name in CLAIMED_TASK_COLUMNS))
        .cte("claimed")
    )
    started = (
        _start_job()
        .where(col(Job.id).in_(select(claimed.c.job_id)))
        .returning(col(Job.id))
        .cte("started")
    )
    marked = (
        _mark_runner(RunnerStatus.WORKING)
        .where(exists(select(claimed.c.id)))
        .returning(col(Runner.id))
        .cte("marked")
    )
    files = (
        select(
            func.coalesce(
                func.json_agg(
                    func.json_build_array(col(JobFile.path), col(JobFile.sha256), col(JobFile.size))
                ),
                literal_column("'[]'::json"),
            )
        )
        .where(col(JobFile.job_id) == claimed.c.job_id)
        .scalar_subquery()
    )
    # What the runner is told of its task (``manager.dispatch.claimed_task``), in the same
    # trip; the job's columns read here are not among those its start changes.
    return (
        select(
            claimed.c.id,
            claimed.c.job_id,
            *(claimed.c[name] for name in CLAIMED_TASK_COLUMNS),
            *(col(getattr(Job, name)) for name in CLAIMED_JOB_COLUMNS),
            files,
        )
        .select_from(claimed.join(Job, col(Job.id) == claimed.c.job_id))
        .add_cte(started, marked)
    )


CLAIMED_TASK_COLUMNS = ("name", "type", "frames", "commands", "attempts")
CLAIMED_JOB_COLUMNS = ("name", "priority", "blend_file", "blender_version", "settings")


@cache
def _postgres_claims() -> tuple[FastStatement, FastStatement]:
    """The claim and its fall-back (every runnable task looked at), each with its job's
    start and its runner's mark in one statement."""
    return (
        FastStatement(_claim_in_one(best_job_first_task()), lists=RUNNER_LISTS),
        FastStatement(_claim_in_one(runnable_tasks()), lists=RUNNER_LISTS),
    )


@cache
def _claim_statements() -> tuple[FastStatement, ...]:
    """Built once: constructing these costs more than running them. (SQLite's; PostgreSQL
    claims with ``_postgres_claims``, and marks a runner idle with the last of these.)"""
    return (
        FastStatement(_claim(best_job_first_task()), lists=RUNNER_LISTS),
        FastStatement(_start_job().where(col(Job.id) == bindparam("job_id"))),
        FastStatement(_mark_runner(RunnerStatus.WORKING)),
        FastStatement(_mark_runner(RunnerStatus.IDLE)),
    )


def claim_next_task(
    engine: Engine,
    runner: Runner | ClaimingRunner,
    *,
    lease_seconds: float,
    now: datetime | None = None,
    seen: bool = False,
    warm_job_id: int | None = None,
) -> int | None:
    """Atomically give the best runnable task to ``runner``; return its id or None.

    As ``claim``, which says how."""
    claimed = claim(
        engine, runner, lease_seconds=lease_seconds, now=now, seen=seen, warm_job_id=warm_job_id
    )
    return claimed.task_id if claimed is not None else None


@dataclass(frozen=True)
class Claimed:
    """A task claimed, and on PostgreSQL what the runner is told of it (the claim's own row
    past the task's id: its job's id, the columns ``CLAIMED_TASK_COLUMNS`` and
    ``CLAIMED_JOB_COLUMNS`` name, then the job's files as ``[path, sha256, size]`` lists)."""

    task_id: int
    details: tuple[Any, ...] | None = None


def claim(
    engine: Engine,
    runner: Runner | ClaimingRunner,
    *,
    lease_seconds: float,
    now: datetime | None = None,
    seen: bool = False,
    warm_job_id: int | None = None,
) -> Claimed | None:
    """Atomically give the best runnable task to ``runner``, or None.

    One ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING`` in a write transaction
    (its SELECT finds the best job first, then its first task; see ``best_job_first_task``):
    ``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two runners
    never get the same task and neither waits on the other's row. The runner is marked
    working (and seen now); with ``seen``, a runner that gets nothing is marked idle and
    seen now, in the same transaction (on PostgreSQL the claim, its job's start and the
    runner's mark are one statement instead: ``_claim_in_one``, which also returns what the
    runner is told of the task). Among jobs of equal priority, ``warm_job_id`` (the job the
    runner keeps a Blender session for) goes first.
    """
    if not runner.enabled:
        return None
    now = now or utcnow()
    claim_, start_job, mark_working, mark_idle = _claim_statements()
    params = {
        **runner_params(runner),
        "now": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "activity": f"claimed by {runner.name}",
        "warm_job_id": warm_job_id,
    }
    # SQLite has one write lock for the whole farm: a runner that would get nothing (most
    # wake-ups of a busy farm) finds that out by a read, without queueing for it. Only a
    # look: the claim below decides, atomically, as if this were not here. On the event
    # loop (``manager.hot_lane``) nothing queues, and a look would only run the query twice.
    if is_sqlite(engine) and not seen and may_wait():
        with transaction(engine) as conn:
            if conn.first(_probe(), params) is None:
                return None
    if not is_sqlite(engine):
        return _claim_on_postgresql(engine, runner, params, seen, mark_idle)
    with transaction(engine, write=True) as conn:
        row = conn.first(claim_, params)
        if row is None:
            if seen:
                conn.rowcount(mark_idle, {"runner_id": runner.id, "now": now})
            return None
        task_id, job_id = row
        conn.rowcount(start_job, {"job_id": job_id, "now": now})
        conn.rowcount(mark_working, {"runner_id": runner.id, "now": now})
    assert task_id is not None
    return Claimed(int(task_id))


def _claim_on_postgresql(
    engine: Engine,
    runner: Runner | ClaimingRunner,
    params: dict[str, Any],
    seen: bool,
    mark_idle: FastStatement,
) -> Claimed | None:
    """``claim`` in statements that are each atomic alone: no BEGIN and COMMIT."""
    claim_best, claim_any = _postgres_claims()
    with transaction(engine, write=True, alone=True) as conn:
        row = conn.first(claim_best, params)
        if row is None:
            # The best job's tasks may all be locked by runners claiming them this instant
            # (in another manager: this one's claims take turns): then look at every runnable
            # task, skipping the locked ones.
            row = conn.first(claim_any, params)
        if row is None:
            if seen:
                conn.rowcount(mark_idle, {"runner_id": runner.id, "now": params["now"]})
            return None
    return Claimed(int(row[0]), tuple(row[1:]))
