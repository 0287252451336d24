"""The job and task state machines; every status change goes through here."""

from __future__ import annotations

from manager.errors import Conflict
from shared.wire import JobStatus, TaskStatus

J, T = JobStatus, TaskStatus

JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.QUEUED: frozenset({J.ACTIVE, J.PAUSED, J.CANCELED, J.FAILED, J.COMPLETED}),
    J.ACTIVE: frozenset(
        {
            J.COMPLETED,
            J.FAILED,
            J.CANCEL_REQUESTED,
            J.CANCELED,
            J.PAUSE_REQUESTED,
            J.PAUSED,
            J.QUEUED,
        }
    ),
    J.PAUSE_REQUESTED: frozenset({J.PAUSED, J.CANCEL_REQUESTED, J.CANCELED, J.FAILED, J.ACTIVE}),
    J.PAUSED: frozenset({J.QUEUED, J.CANCELED, J.REQUEUEING}),
    J.CANCEL_REQUESTED: frozenset({J.CANCELED}),
    J.REQUEUEING: frozenset({J.QUEUED}),
    J.COMPLETED: frozenset({J.REQUEUEING}),
    J.FAILED: frozenset({J.REQUEUEING}),
    J.CANCELED: frozenset({J.REQUEUEING}),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.QUEUED: frozenset({T.ACTIVE, T.CANCELED, T.PAUSED}),
    T.ACTIVE: frozenset({T.COMPLETED, T.SOFT_FAILED, T.FAILED, T.CANCELED, T.PAUSED, T.QUEUED}),
    T.SOFT_FAILED: frozenset({T.ACTIVE, T.CANCELED, T.PAUSED, T.QUEUED, T.FAILED}),
    T.PAUSED: frozenset({T.QUEUED, T.CANCELED}),
    T.COMPLETED: frozenset({T.QUEUED}),
    T.FAILED: frozenset({T.QUEUED}),
    T.CANCELED: frozenset({T.QUEUED}),
}

TASK_RUNNABLE = frozenset({T.QUEUED, T.SOFT_FAILED})
TASK_UNFINISHED = frozenset({T.QUEUED, T.SOFT_FAILED, T.ACTIVE, T.PAUSED})
JOB_RUNNABLE = frozenset({J.QUEUED, J.ACTIVE})
TASK_FINISHED = frozenset({T.COMPLETED, T.FAILED, T.CANCELED})


def check_job_transition(current: str, new: JobStatus) -> JobStatus:
    """Return ``new`` if a job may go there from ``current``; raise Conflict (409) if not."""
    old = JobStatus(current)
    if new != old and new not in JOB_TRANSITIONS[old]:
        raise Conflict(f"a {old} job cannot become {new}", code="illegal_transition")
    return new


def check_task_transition(current: str, new: TaskStatus) -> TaskStatus:
    old = TaskStatus(current)
    if new != old and new not in TASK_TRANSITIONS[old]:
        raise Conflict(f"a {old} task cannot become {new}", code="illegal_transition")
    return new
