"""Jobs API: submit a .blend, follow it, cancel it, fetch its outputs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status
from fastapi.responses import FileResponse
from sqlmodel import col, select

from manager.deps import CurrentUser, SessionDep, SettingsDep, StorageDep, WorkSignalDep
from manager.errors import Conflict, NotFound
from manager.jobs import (
    create_render_job,
    get_job_for,
    job_public,
    job_status_public,
    parse_frames_or_422,
)
from manager.models import Job, Output, Task
from manager.scheduler import cancel_job
from manager.schemas import (
    JobPublic,
    JobsPublic,
    JobStatusPublic,
    OutputPublic,
    OutputsPublic,
    TaskPublic,
)
from manager.storage import safe_relative_path
from shared.wire import JOB_FINISHED

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
RETRY_AFTER_SECONDS = "2"


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def submit_job(
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    signal: WorkSignalDep,
    file: Annotated[UploadFile, File(description="the .blend to render")],
    frames: Annotated[str, Form(description="frame range, e.g. 1-10 or 1,3,5-8")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    priority: Annotated[int, Form(ge=0, le=100)] = 50,
    chunk_size: Annotated[int, Form(ge=1, le=10_000, description="frames per task")] = 3,
    scene: Annotated[str | None, Form(max_length=200)] = None,
) -> JobPublic:
    """Upload a .blend and render ``frames``; answers 202 with the job's Location."""
    parse_frames_or_422(frames)  # fail before reading a large upload
    with storage.temp_file() as (temp, temp_path):
        sha256, size = storage.copy_to_temp(file.file, temp, max_bytes=settings.max_upload_bytes)
        job = create_render_job(
            session,
            storage,
            owner=user,
            upload=temp_path,
            sha256=sha256,
            size=size,
            filename=file.filename or "",
            frames=frames,
            name=name,
            priority=priority,
            chunk_size=chunk_size,
            scene=scene,
        )
    signal.notify()
    response.headers["Location"] = f"/api/jobs/{job.id}"
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return job_public(session, job)


@router.get("", response_model=JobsPublic)
def list_jobs(
    user: CurrentUser, session: SessionDep, status_filter: str | None = None, limit: int = 100
) -> JobsPublic:
    query = select(Job).order_by(col(Job.id).desc()).limit(max(1, min(limit, 1000)))
    if not user.is_admin:
        query = query.where(Job.owner_id == user.id)
    if status_filter:
        query = query.where(Job.status == status_filter)
    jobs = [job_public(session, job) for job in session.exec(query).all()]
    return JobsPublic(jobs=jobs, count=len(jobs))


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: int, user: CurrentUser, session: SessionDep) -> JobPublic:
    return job_public(session, get_job_for(session, job_id, user))


@router.get(
    "/{job_id}/status",
    response_model=JobStatusPublic,
    responses={202: {"description": "not finished yet; ask again after Retry-After seconds"}},
)
def get_job_status(
    job_id: int, user: CurrentUser, session: SessionDep, response: Response
) -> JobStatusPublic:
    """200 once the job is completed, failed or canceled; 202 while it is not."""
    job = get_job_for(session, job_id, user)
    if job.status not in JOB_FINISHED:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        response.headers["Location"] = f"/api/jobs/{job_id}/status"
    return job_status_public(session, job)


@router.delete("/{job_id}", response_model=JobPublic)
def cancel(job_id: int, user: CurrentUser, session: SessionDep) -> JobPublic:
    """Cancel the job; runners working on it are told to stop."""
    job = get_job_for(session, job_id, user)
    if job.status in JOB_FINISHED:
        raise Conflict(f"job {job_id} is already {job.status}", code="job_finished")
    cancel_job(session, job)
    session.commit()
    return job_public(session, job)


@router.get("/{job_id}/tasks", response_model=list[TaskPublic])
def list_tasks(job_id: int, user: CurrentUser, session: SessionDep) -> list[TaskPublic]:
    get_job_for(session, job_id, user)
    tasks = session.exec(
        select(Task).where(Task.job_id == job_id).order_by(col(Task.task_order))
    ).all()
    return [TaskPublic.model_validate(task, from_attributes=True) for task in tasks]


def _output_public(job_id: int, output: Output) -> OutputPublic:
    return OutputPublic(
        name=output.name,
        frame=output.frame,
        size=output.size,
        sha256=output.sha256,
        url=f"/api/jobs/{job_id}/outputs/{output.name}",
        created_at=output.created_at,
    )


@router.get("/{job_id}/outputs", response_model=OutputsPublic)
def list_outputs(job_id: int, user: CurrentUser, session: SessionDep) -> OutputsPublic:
    get_job_for(session, job_id, user)
    outputs = session.exec(
        select(Output).where(Output.job_id == job_id).order_by(col(Output.name))
    ).all()
    items = [_output_public(job_id, output) for output in outputs]
    return OutputsPublic(outputs=items, count=len(items))


@router.get("/{job_id}/outputs/{name:path}", response_class=FileResponse)
def download_output(
    job_id: int, name: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> FileResponse:
    get_job_for(session, job_id, user)
    clean = safe_relative_path(name)
    output = session.exec(
        select(Output).where(Output.job_id == job_id, Output.name == clean)
    ).first()
    path = storage.output_path(job_id, clean)
    if output is None or not path.is_file():
        raise NotFound(f"job {job_id} has no output {clean!r}", code="output_not_found")
    return FileResponse(path, filename=path.name, headers={"X-Checksum-SHA256": output.sha256})
