"""What the polled parts of the web page read and render, kept for a moment, shared.

Every open job page and jobs list asks again every 1.5 s; fifty people watching the farm
would read and render the same jobs fifty times in that time. A job's figures and HTML are
kept under its row's version (``updated_at``, which every change to the job itself sets,
with its status, activity and priority), so a pause, a resume or a new priority shows at
once. What runners change on tasks without touching the job's row (claims, progress and, on
SQLite, completions) shows within ``RUNNING_SECONDS``. A job that is queued, paused or
finished has no runner on it, and its figures are kept longer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from manager.models import Job
from shared.wire import JOB_FINISHED, JobStatus

RUNNING_SECONDS = 1.0
QUIET_SECONDS = 60.0
ENTRIES = 2000

T = TypeVar("T")


class Recent:
    """A small map whose values expire: at most ``size`` of them, the oldest dropped first."""

    def __init__(self, size: int = ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, value: object, seconds: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def kept(self, key: Hashable, kind: type[T], seconds: float, make: Callable[[], T]) -> T:
        """The ``kind`` kept under ``key``; else ``make()``'s, kept for ``seconds``."""
        value = self.get(key)
        if isinstance(value, kind):
            return value
        made = make()
        self.put(key, made, seconds)
        return made


JobVersion = tuple[Hashable, ...]

QUIET = (*JOB_FINISHED, JobStatus.QUEUED, JobStatus.PAUSED)
"""Job states in which no runner changes the job's tasks: the first claim of a queued job
makes it active, and resuming a paused one changes the job itself."""


def job_version(job: Job) -> JobVersion:
    """What the job's own row says: it changes with every change to the job itself."""
    return (job.updated_at, job.status, job.activity, job.failure_reason, job.priority)


def job_versions(jobs: Sequence[Job]) -> dict[int, JobVersion]:
    return {job.id or 0: job_version(job) for job in jobs}


def seconds_for(job: Job) -> float:
    """How long a job's figures are kept: while runners work on it, their claims, progress
    and completions change its tasks without changing the job's row."""
    return QUIET_SECONDS if job.status in QUIET else RUNNING_SECONDS
