"""Periodic housekeeping: silent runners go offline, stale leases and stuck tasks come back."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlmodel import Session, col

from manager.failures import fail_task
from manager.farm_settings import get_setting
from manager.job_control import release_task
from manager.models import Job, Runner, Task, utcnow
from manager.states import JOB_RUNNABLE, TASK_RUNNABLE
from shared.wire import RunnerStatus, TaskStatus

log = logging.getLogger(__name__)
SWEEP_LOCK = 0x6666_7377
"""PostgreSQL advisory lock key: one manager process sweeps at a time."""


def sweep(session: Session, *, runner_timeout: float, now: datetime | None = None) -> list[int]:
    """One pass; returns the ids of tasks that became runnable again."""
    now = now or utcnow()
    changed: list[int] = []
    if session.get_bind().dialect.name == "postgresql" and not session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK}
    ):
        return changed  # another manager process is sweeping this very moment

    cutoff = now - timedelta(seconds=runner_timeout)
    silent = session.scalars(
        select(Runner).where(
            col(Runner.status) != RunnerStatus.OFFLINE.value, col(Runner.last_seen_at) < cutoff
        )
    ).all()
    for runner in silent:
        runner.status = RunnerStatus.OFFLINE.value
        session.add(runner)
        log.warning("runner %s is offline (silent since %s)", runner.name, runner.last_seen_at)
        for task in _active_tasks(session, col(Task.runner_id) == runner.id):
            _release(session, task, f"runner {runner.name} went offline", changed)
    for task in _active_tasks(session, col(Task.lease_expires_at) < now):
        _release(session, task, "its lease expired without a heartbeat", changed)
    changed += _time_out_stuck_tasks(session, now)
    explain_missing_capabilities(session)
    return changed


def explain_missing_capabilities(session: Session) -> None:
    """A task whose capability no enabled runner has says so on its job (it keeps waiting:
    a runner that has it may still come)."""
    waiting = session.execute(
        select(Task, Job)
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(
            col(Task.capability).is_not(None),
            col(Task.status).in_([s.value for s in TASK_RUNNABLE]),
            col(Job.status).in_([s.value for s in JOB_RUNNABLE]),
        )
    ).all()
    if not waiting:
        return
    offered = {
        capability
        for capabilities in session.scalars(
            select(col(Runner.capabilities)).where(col(Runner.enabled).is_(True))
        )
        for capability in capabilities
    }
    for task, job in waiting:
        if task.capability in offered:
            continue
        reason = (
            f"waiting: task {task.name} needs a runner with {task.capability}, "
            "and no enabled runner has it (check the runners' FFmpeg encoders)"
        )
        if job.activity != reason:
            job.activity = reason
            session.add(job)


def _active_tasks(session: Session, condition: object) -> list[Task]:
    query = select(Task).where(col(Task.status) == TaskStatus.ACTIVE.value, condition)  # type: ignore[arg-type]
    return list(session.scalars(query).all())


def _unchanged(session: Session, task: Task) -> bool:
    """Lock the task's row and read it again: still active on the same runner, with neither
    progress nor a heartbeat since it was read? (A completion, report or heartbeat between the
    read and now wins; on SQLite the sweep's write transaction already keeps them out.)"""
    seen = (task.runner_id, task.last_progress_at, task.lease_expires_at)
    session.refresh(task, with_for_update=True)
    now = (task.runner_id, task.last_progress_at, task.lease_expires_at)
    return task.status == TaskStatus.ACTIVE.value and now == seen


def _release(session: Session, task: Task, reason: str, changed: list[int]) -> None:
    if not _unchanged(session, task):
        return
    job = session.get(Job, task.job_id)
    assert job is not None
    release_task(session, task, job, reason=reason)
    if task.id is not None:
        changed.append(task.id)


def _time_out_stuck_tasks(session: Session, now: datetime) -> list[int]:
    """Active tasks without progress past their timeout: requeue or fail, per policy."""
    default_timeout = float(get_setting(session, "task-timeout"))
    policy = str(get_setting(session, "task-timeout-policy"))
    changed = []
    for task in _active_tasks(session, col(Task.last_progress_at).is_not(None)):
        timeout = task.timeout_seconds or default_timeout
        if not timeout or task.last_progress_at is None:
            continue
        silent_for = (now - task.last_progress_at).total_seconds()
        if silent_for <= timeout or not _unchanged(session, task):
            continue
        job = session.get(Job, task.job_id)
        assert job is not None
        reason = f"no progress for {silent_for:.0f} s (timeout {timeout:.0f} s)"
        log.warning("task %s of job %s: %s; %s", task.name, job.id, reason, policy)
        if policy == "fail":
            runner = session.get(Runner, task.runner_id) if task.runner_id else None
            fail_task(session, task, job, runner, reason, now=now)
        else:
            release_task(session, task, job, reason=reason)
        if task.id is not None:
            changed.append(task.id)
    return changed
