"""SQLModel tables: users, API keys, runners, blobs, jobs, job files, tasks and outputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from manager.states import JOB_RUNNABLE
from shared.wire import JobStatus, TaskStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


# Default factories written in Python: SQLModel asks for a factory's signature each time it
# calls one, and for a builtin (``list``, ``dict``) that means parsing its text signature,
# 0.2 ms a field.
def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[str, Any]:
    return {}


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _fk(target: str, *, ondelete: str, nullable: bool = True, index: bool = True) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index
        ),
    )


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = ""
    password_hash: str | None = None
    is_admin: bool = False
    created_at: datetime = _created()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it")
    key_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    scope: str = Field(description="runner or user")
    user_id: int | None = _fk("users.id", ondelete="CASCADE")
    created_at: datetime = _created()
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class Runner(SQLModel, table=True):
    __tablename__ = "runners"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    api_key_id: int | None = _fk("api_keys.id", ondelete="SET NULL")
    status: str = "idle"
    version: str = ""
    platform: str = ""
    blender: dict[str, Any] = Field(
        default_factory=_empty_dict, sa_column=Column(JSON, nullable=False)
    )
    task_types: list[str] = Field(
        default_factory=_empty_list, sa_column=Column(JSON, nullable=False)
    )
    tags: list[str] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    capabilities: list[str] = Field(
        default_factory=_empty_list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="what the runner can do beyond its task types, e.g. encode:EXR_AV1_MP4",
    )
    enabled: bool = True
    registered_at: datetime = _created()
    last_seen_at: datetime | None = _ts()  # (not indexed: see migration 0008)


class Blob(SQLModel, table=True):
    """A stored file, named by its content."""

    __tablename__ = "blobs"

    sha256: str = Field(sa_column=Column(String(64), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _created()


RUNNABLE_JOB_STATES = tuple(sorted(state.value for state in JOB_RUNNABLE))
RUNNABLE_JOBS_SQL = f"status IN ({', '.join(repr(state) for state in RUNNABLE_JOB_STATES)})"
"""Jobs whose tasks runners can claim, as the partial index ``ix_jobs_runnable`` names them;
the claim's query repeats the term exactly, which is what lets SQLite use that index."""


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    owner_id: int | None = _fk("users.id", ondelete="SET NULL")
    job_type: str = "simple-blender-render"
    status: str = Field(default=JobStatus.QUEUED, index=True)
    priority: int = 50
    frames: str = Field(description="the frame range as submitted")
    frame_count: int
    chunk_size: int
    blend_file: str = Field(description="path of the .blend inside the job's files")
    blender_version: str = Field(default="", description="Blender version the .blend was saved by")
    settings: dict[str, Any] = Field(
        default_factory=_empty_dict, sa_column=Column(JSON, nullable=False)
    )
    tag: str | None = Field(default=None, description="only runners with this tag take the job")
    failure_reason: str | None = None
    activity: str = Field(default="", description="why the job is in its state, in words")
    created_at: datetime = _created()
    updated_at: datetime = _created()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


# The claim walks the running jobs best first and stops at the first one with a task for the
# runner (``manager.scheduler.best_job_first_task``).
Index(
    "ix_jobs_runnable",
    Job.__table__.c.priority.desc(),  # type: ignore[attr-defined]
    Job.__table__.c.id,  # type: ignore[attr-defined]
    sqlite_where=text(RUNNABLE_JOBS_SQL),
    postgresql_where=text(RUNNABLE_JOBS_SQL),
)


class JobPin(SQLModel, table=True):
    """Manual assignment: a pinned job runs only on the runners named here."""

    __tablename__ = "job_pins"

    job_id: int = Field(
        sa_column=Column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    runner_name: str = Field(sa_column=Column(String(200), primary_key=True))


class JobBlocklist(SQLModel, table=True):
    """A runner that failed too many tasks of a job gets no more of them."""

    __tablename__ = "job_blocklist"

    job_id: int = Field(
        sa_column=Column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    runner_id: int = Field(
        sa_column=Column(Integer, ForeignKey("runners.id", ondelete="CASCADE"), primary_key=True)
    )
    reason: str = ""
    created_at: datetime = _created()


class FarmSetting(SQLModel, table=True):
    """Runtime configuration that admins change (``framefarm manager config``)."""

    __tablename__ = "farm_settings"

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_at: datetime = _created()


class JobFile(SQLModel, table=True):
    """One file of a job's manifest: a relative path and the blob that holds it."""

    __tablename__ = "job_files"

    job_id: int = Field(
        sa_column=Column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    )
    path: str = Field(sa_column=Column(String(1024), primary_key=True))
    sha256: str = Field(
        sa_column=Column(String(64), ForeignKey("blobs.sha256"), nullable=False, index=True)
    )
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_claim", "status", "job_id", "pending_dependencies", "task_order"),
        Index("ix_tasks_ready", "status", "pending_dependencies"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str
    type: str
    task_order: int
    status: str = TaskStatus.QUEUED
    frames: list[int] = Field(default_factory=_empty_list, sa_column=Column(JSON, nullable=False))
    commands: list[dict[str, Any]] = Field(
        default_factory=_empty_list, sa_column=Column(JSON, nullable=False)
    )
    capability: str | None = Field(
        default=None, description="what the runner must have to take this task"
    )
    pending_dependencies: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="dependencies not completed yet; kept by database triggers "
        "(migration 0005) so that claiming need not look at them",
    )
    runner_id: int | None = _fk("runners.id", ondelete="SET NULL")
    attempts: int = 0
    frames_done: int = 0
    activity: str = ""
    failure_reason: str | None = None
    lease_expires_at: datetime | None = _ts()
    timeout_seconds: float | None = Field(
        default=None, description="fail or requeue when no progress arrives for this long"
    )
    last_progress_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    updated_at: datetime = _created()


class TaskDependency(SQLModel, table=True):
    __tablename__ = "task_dependencies"

    task_id: int = Field(
        sa_column=Column(Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    )
    depends_on_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )


class TaskFailure(SQLModel, table=True):
    """One failed attempt of a task on a runner, with the runner's reason."""

    __tablename__ = "task_failures"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    job_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    runner_id: int | None = _fk("runners.id", ondelete="SET NULL")
    reason: str = ""
    created_at: datetime = _created()


class Output(SQLModel, table=True):
    """A file a task produced (an EXR frame, a video), kept under ``outputs/<job>/``."""

    __tablename__ = "outputs"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    task_id: int | None = _fk("tasks.id", ondelete="SET NULL")
    name: str = Field(sa_column=Column(String(1024), nullable=False))
    frame: int | None = None
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = _created()

    __table_args__ = (Index("ux_outputs_job_name", "job_id", "name", unique=True),)
