"""Names that travel between manager, runner and add-on."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    PAUSED = "paused"
    PAUSE_REQUESTED = "pause-requested"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCEL_REQUESTED = "cancel-requested"
    CANCELED = "canceled"
    REQUEUEING = "requeueing"


JOB_FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


class TaskStatus(StrEnum):
    QUEUED = "queued"
    ACTIVE = "active"
    COMPLETED = "completed"
    SOFT_FAILED = "soft-failed"
    FAILED = "failed"
    CANCELED = "canceled"
    PAUSED = "paused"


class TaskType(StrEnum):
    BLENDER = "blender"
    FFMPEG = "ffmpeg"
    FILE_MANAGEMENT = "file-management"
    MISC = "misc"


class RunnerStatus(StrEnum):
    IDLE = "idle"
    WORKING = "working"
    OFFLINE = "offline"


class ApiKeyScope(StrEnum):
    RUNNER = "runner"
    USER = "user"


API_KEY_PREFIX = "ff_"
