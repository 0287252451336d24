"""What the API accepts and returns; table models never leave the manager."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import annotated_types
from pydantic import BaseModel, Field

MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, annotated_types.Ge(1), annotated_types.Le(MAX_ROW_ID)]
"""A row id as the API accepts it: what no database column can hold is a 422, not a crash."""


class TaskCounts(BaseModel):
    total: int = 0
    queued: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0


class BlocklistEntry(BaseModel):
    runner: str
    reason: str


class JobPublic(BaseModel):
    id: int
    name: str
    job_type: str
    status: str
    activity: str = Field(description="why the job is in its state")
    priority: int
    tag: str | None
    runners: list[str] = Field(description="runners the job is pinned to; empty: any runner")
    blocklist: list[BlocklistEntry]
    frames: str
    frame_count: int
    frames_done: int
    chunk_size: int
    blend_file: str
    blender_version: str
    settings: dict[str, Any]
    failure_reason: str | None
    owner_id: int | None
    tasks: TaskCounts
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobsPublic(BaseModel):
    jobs: list[JobPublic]
    count: int


class JobStatusPublic(BaseModel):
    id: int
    status: str
    finished: bool = Field(description="true once completed, failed or canceled")
    succeeded: bool = Field(description="true only for a completed job")
    frames_done: int
    frame_count: int
    failure_reason: str | None


class TaskPublic(BaseModel):
    id: int
    job_id: int
    name: str
    type: str
    status: str
    frames: list[int]
    depends_on: list[int] = Field(default_factory=list)
    frames_done: int
    runner_id: int | None
    attempts: int
    activity: str
    failure_reason: str | None
    started_at: datetime | None
    finished_at: datetime | None


class OutputPublic(BaseModel):
    name: str
    frame: int | None
    size: int
    sha256: str
    url: str
    created_at: datetime


class OutputsPublic(BaseModel):
    outputs: list[OutputPublic]
    count: int


class BlenderInfo(BaseModel):
    kind: str = Field(description="executable or bpy")
    version: str
    path: str = ""


class RunnerRegister(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._@-]+$")
    version: str = ""
    platform: str = ""
    blender: BlenderInfo | None = None
    task_types: list[str] = Field(default_factory=lambda: ["blender"])
    tags: list[str] | None = Field(
        None, description="runner tags; None keeps the tags the manager has for this runner"
    )
    capabilities: list[str] = Field(
        default_factory=list, description="e.g. encode:EXR_AV1_MP4 for each video it can encode"
    )
    blender_versions: list[str] = Field(
        default_factory=list, description="Blender versions (5.0, 3.4) it has or can download"
    )
    devices: list[dict[str, str]] = Field(
        default_factory=list, description="Cycles devices Blender found: type, name, id"
    )


class RunnerRegistered(BaseModel):
    id: int
    name: str
    heartbeat_interval: float
    runner_timeout: float


class HeartbeatReply(BaseModel):
    ok: bool = True
    canceled_tasks: list[int] = Field(
        default_factory=list, description="tasks of this runner that must stop now"
    )


class JobFilePublic(BaseModel):
    path: str
    sha256: str
    size: int


class ClaimedJob(BaseModel):
    id: int
    name: str
    priority: int
    blend_file: str
    blender_version: str
    settings: dict[str, Any]
    files: list[JobFilePublic]


class ClaimedTask(BaseModel):
    id: int
    name: str
    type: str
    frames: list[int]
    commands: list[dict[str, Any]]
    attempt: int
    job: ClaimedJob


class TaskProgress(BaseModel):
    frames_done: int | None = Field(None, ge=0)
    activity: str | None = Field(None, max_length=500)
    log: list[str] = Field(default_factory=list, max_length=1000)


class ProgressReply(BaseModel):
    keep_running: bool
    reason: str | None = None


class TaskFailure(BaseModel):
    reason: str = Field(min_length=1, max_length=20_000)


class ManifestFile(BaseModel):
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class JobSubmit(BaseModel):
    type: str = Field("simple-blender-render", description="job type name")
    settings: dict[str, Any] = Field(default_factory=dict)
    type_etag: str | None = Field(None, description="etag of the schema the form was built from")
    name: str | None = Field(None, max_length=200)
    priority: int = Field(50, ge=0, le=100)
    tag: str | None = Field(None, max_length=100)
    runners: list[str] = Field(default_factory=list)
    blend_file: str = Field(description="relative path of the .blend among the files")
    files: dict[str, ManifestFile] = Field(
        description="relative path → content hash and size; upload missing blobs first"
    )


class BlobRef(BaseModel):
    sha256: str
    size: int = Field(ge=0)


class BlobsQuery(BaseModel):
    blobs: list[BlobRef] = Field(max_length=100_000, description="the files a job will need")


class BlobsMissing(BaseModel):
    missing: list[BlobRef] = Field(description="those to upload with PUT /api/blobs/{sha256}")


class JobUpdate(BaseModel):
    priority: int | None = Field(None, ge=0, le=100)
    runners: list[str] | None = Field(
        None, description="pin the job to these runner names; an empty list unpins it"
    )


class RequeueRequest(BaseModel):
    failed_only: bool = Field(
        False, description="requeue only failed and canceled tasks instead of the whole job"
    )


class BulkAction(BaseModel):
    action: str = Field(pattern="^(pause|resume|cancel|requeue|requeue-failed|delete|priority)$")
    job_ids: list[RowId] = Field(min_length=1, max_length=1000)
    priority: int | None = Field(None, ge=0, le=100)


class BulkResult(BaseModel):
    job_id: int
    ok: bool
    code: str | None = None
    message: str | None = None


class BulkResults(BaseModel):
    results: list[BulkResult]


class VersionPublic(BaseModel):
    name: str = "framefarm"
    version: str
