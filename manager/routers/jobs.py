"""Jobs API: submit a .blend, follow it, cancel it, fetch its outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Response, UploadFile, status
from fastapi.responses import FileResponse
from sqlmodel import Session, col, select

from manager.blendfile import blend_file_version
from manager.deps import (
    CurrentUser,
    JobTypesDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    WorkSignalDep,
)
from manager.errors import FarmError, InvalidInput, NotFound
from manager.job_control import (
    cancel_job,
    delete_job,
    pause_job,
    requeue_job,
    requeue_task,
    resume_job,
    set_pins,
    set_priority,
)
from manager.jobs import (
    get_job_for,
    job_public,
    job_status_public,
    jobs_public,
    stored_output,
    task_public,
    tasks_public,
)
from manager.models import Job, Output, Task
from manager.schemas import (
    BulkAction,
    BulkResult,
    BulkResults,
    JobPublic,
    JobsPublic,
    JobStatusPublic,
    JobSubmit,
    JobUpdate,
    OutputPublic,
    OutputsPublic,
    RequeueRequest,
    RowId,
    TaskPublic,
)
from manager.signals import WorkSignal
from manager.storage import safe_relative_path
from manager.submission import (
    DEFAULT_JOB_TYPE,
    Submission,
    create_job,
    parse_frames_or_422,
    store_upload,
)
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
    job_types: JobTypesDep,
    file: Annotated[UploadFile, File(description="the .blend to render")],
    frames: Annotated[
        str | None, Form(description="frame range, e.g. 1-10 or 1,3,5-8 (the frames setting)")
    ] = None,
    job_type: Annotated[str, Form(alias="type", description="job type name")] = DEFAULT_JOB_TYPE,
    job_settings: Annotated[
        str | None, Form(alias="settings", description="the job type's settings as JSON")
    ] = None,
    type_etag: Annotated[
        str | None, Form(description="etag of the job type the form was built from (412 if stale)")
    ] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    priority: Annotated[int, Form(ge=0, le=100)] = 50,
    chunk_size: Annotated[
        int | None,
        Form(ge=1, le=10_000, description="frames per task (default: the farm's setting)"),
    ] = None,
    scene: Annotated[str | None, Form(max_length=200)] = None,
    tag: Annotated[
        str | None, Form(max_length=100, description="only runners with this tag take the job")
    ] = None,
    runners: Annotated[
        str | None, Form(description="comma-separated runner names to pin the job to")
    ] = None,
) -> JobPublic:
    """Upload a .blend and render it; answers 202 with the job's Location.

    ``frames``, ``chunk_size`` and ``scene`` are shortcuts for the settings of the same name.
    """
    values = _settings_json(job_settings)
    for key, value in (("frames", frames), ("chunk_size", chunk_size), ("scene", scene)):
        if value is not None:
            values[key] = value
    if "frames" in values and isinstance(values["frames"], str):
        parse_frames_or_422(values["frames"])  # fail before reading a large upload
    blend_name = safe_relative_path(Path(file.filename or "scene.blend").name)
    if not blend_name.lower().endswith(".blend"):
        raise InvalidInput(
            f"{file.filename!r} does not end in .blend; upload a Blender scene file",
            code="not_a_blend",
        )
    with storage.temp_file() as (temp, temp_path):
        sha256, size = storage.copy_to_temp(file.file, temp, max_bytes=settings.max_upload_bytes)
        blend_file_version(temp_path)  # a 422 before anything is stored
        store_upload(session, storage, temp_path, sha256, size)
    job = create_job(
        session,
        storage,
        job_types,
        user,
        Submission(
            job_type=job_type,
            settings=values,
            files={blend_name: (sha256, size)},
            blend_file=blend_name,
            name=name,
            priority=priority,
            tag=tag,
            runners=[n.strip() for n in (runners or "").split(",") if n.strip()],
            type_etag=type_etag,
        ),
    )
    return _accepted(session, job, response, signal)


@router.post("/manifest", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def submit_manifest(
    body: JobSubmit,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    signal: WorkSignalDep,
    job_types: JobTypesDep,
) -> JobPublic:
    """Create a job from files already uploaded as blobs (the add-on's way; see /api/blobs)."""
    job = create_job(
        session,
        storage,
        job_types,
        user,
        Submission(
            job_type=body.type,
            settings=body.settings,
            files={path: (f.sha256, f.size) for path, f in body.files.items()},
            blend_file=body.blend_file,
            name=body.name,
            priority=body.priority,
            tag=body.tag,
            runners=body.runners,
            type_etag=body.type_etag,
        ),
    )
    return _accepted(session, job, response, signal)


def _settings_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"settings is not valid JSON: {exc}", code="invalid_settings") from exc
    if not isinstance(value, dict):
        raise InvalidInput("settings must be a JSON object", code="invalid_settings")
    return value


def _accepted(session: Session, job: Job, response: Response, signal: WorkSignal) -> JobPublic:
    public = job_public(session, job)
    signal.notify(public.tasks.queued)
    response.headers["Location"] = f"/api/jobs/{job.id}"
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return public


@router.get("", response_model=JobsPublic)
def list_jobs(
    user: CurrentUser, session: SessionDep, status_filter: str | None = None, limit: int = 100
) -> JobsPublic:
    query = select(Job).order_by(col(Job.id).desc()).limit(max(1, min(limit, 1000)))
    if not user.is_admin:
        query = query.where(Job.owner_id == user.id)
    if status_filter:
        query = query.where(Job.status == status_filter)
    jobs = jobs_public(session, session.exec(query).all())
    return JobsPublic(jobs=jobs, count=len(jobs))


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: RowId, user: CurrentUser, session: SessionDep) -> JobPublic:
    return job_public(session, get_job_for(session, job_id, user))


@router.get(
    "/{job_id}/status",
    response_model=JobStatusPublic,
    responses={202: {"description": "not finished yet; ask again after Retry-After seconds"}},
)
def get_job_status(
    job_id: RowId, user: CurrentUser, session: SessionDep, response: Response
) -> JobStatusPublic:
    """200 once the job is completed, failed or canceled; 202 while it is not."""
    job = get_job_for(session, job_id, user)
    if job.status not in JOB_FINISHED:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        response.headers["Location"] = f"/api/jobs/{job_id}/status"
    return job_status_public(session, job)


@router.delete("/{job_id}", response_model=JobPublic)
def cancel(job_id: RowId, user: CurrentUser, session: SessionDep) -> JobPublic:
    """Cancel the job (same as POST …/cancel); runners working on it are told to stop."""
    return _control(session, get_job_for(session, job_id, user), cancel_job)


@router.get("/{job_id}/tasks", response_model=list[TaskPublic])
def list_tasks(job_id: RowId, user: CurrentUser, session: SessionDep) -> list[TaskPublic]:
    get_job_for(session, job_id, user)
    tasks = session.exec(
        select(Task).where(Task.job_id == job_id).order_by(col(Task.task_order))
    ).all()
    return tasks_public(session, tasks)


def _output_public(job_id: RowId, output: Output) -> OutputPublic:
    return OutputPublic(
        name=output.name,
        frame=output.frame,
        size=output.size,
        sha256=output.sha256,
        url=f"/api/jobs/{job_id}/outputs/{output.name}",
        created_at=output.created_at,
    )


@router.get("/{job_id}/outputs", response_model=OutputsPublic)
def list_outputs(job_id: RowId, user: CurrentUser, session: SessionDep) -> OutputsPublic:
    get_job_for(session, job_id, user)
    outputs = session.exec(
        select(Output).where(Output.job_id == job_id).order_by(col(Output.name))
    ).all()
    items = [_output_public(job_id, output) for output in outputs]
    return OutputsPublic(outputs=items, count=len(items))


@router.get("/{job_id}/outputs/{name:path}", response_class=FileResponse)
def download_output(
    job_id: RowId, name: str, user: CurrentUser, session: SessionDep, storage: StorageDep
) -> FileResponse:
    get_job_for(session, job_id, user)
    found = stored_output(session, storage, job_id, name)
    if found is None:
        clean = safe_relative_path(name)
        raise NotFound(f"job {job_id} has no output {clean!r}", code="output_not_found")
    output, path = found
    return FileResponse(path, filename=path.name, headers={"X-Checksum-SHA256": output.sha256})


# -- job control --------------------------------------------------------------------------


def _control(session: Session, job: Job, action: Callable[[Session, Job], object]) -> JobPublic:
    action(session, job)
    session.commit()
    return job_public(session, job)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_post(job_id: RowId, user: CurrentUser, session: SessionDep) -> JobPublic:
    """Cancel: waiting tasks at once, running ones at their runner's next report."""
    return _control(session, get_job_for(session, job_id, user), cancel_job)


@router.post("/{job_id}/pause", response_model=JobPublic)
def pause(job_id: RowId, user: CurrentUser, session: SessionDep) -> JobPublic:
    """Pause: no new tasks start; running ones stop and wait to be resumed."""
    return _control(session, get_job_for(session, job_id, user), pause_job)


@router.post("/{job_id}/resume", response_model=JobPublic)
def resume(
    job_id: RowId, user: CurrentUser, session: SessionDep, signal: WorkSignalDep
) -> JobPublic:
    result = _control(session, get_job_for(session, job_id, user), resume_job)
    signal.notify(result.tasks.queued)
    return result


@router.post("/{job_id}/requeue", response_model=JobPublic)
def requeue(
    job_id: RowId,
    body: RequeueRequest,
    user: CurrentUser,
    session: SessionDep,
    signal: WorkSignalDep,
) -> JobPublic:
    """Requeue the whole (finished or paused) job, or only its failed and canceled tasks."""
    job = get_job_for(session, job_id, user)
    result = _control(session, job, lambda s, j: requeue_job(s, j, failed_only=body.failed_only))
    signal.notify(result.tasks.queued)
    return result


@router.post("/{job_id}/tasks/{task_id}/requeue", response_model=TaskPublic)
def requeue_one_task(
    job_id: RowId, task_id: RowId, user: CurrentUser, session: SessionDep, signal: WorkSignalDep
) -> TaskPublic:
    job = get_job_for(session, job_id, user)
    task = session.get(Task, task_id)
    if task is None or task.job_id != job_id:
        raise NotFound(f"job {job_id} has no task {task_id}", code="task_not_found")
    requeue_task(session, job, task)
    session.commit()
    signal.notify(1)
    return task_public(session, task)


@router.patch("/{job_id}", response_model=JobPublic)
def update_job(
    job_id: RowId, body: JobUpdate, user: CurrentUser, session: SessionDep, signal: WorkSignalDep
) -> JobPublic:
    """Change the priority, or pin the job to named runners (manual assignment)."""
    job = get_job_for(session, job_id, user)
    if body.priority is not None:
        set_priority(job, body.priority)
    if body.runners is not None:
        set_pins(session, job, body.runners)
    session.add(job)
    session.commit()
    signal.notify()  # who may run what changed: every waiting runner looks again
    return job_public(session, job)


@router.post("/{job_id}/delete", status_code=status.HTTP_202_ACCEPTED)
def delete(
    job_id: RowId,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    background: BackgroundTasks,
) -> dict[str, int | str]:
    """Delete the job and its tasks now; its files are removed in the background."""
    job = get_job_for(session, job_id, user)
    delete_job(session, job)
    session.commit()
    background.add_task(storage.remove_job_files, job_id)
    return {"id": job_id, "status": "deleted"}


@router.post("/bulk", response_model=BulkResults)
def bulk(
    body: BulkAction,
    user: CurrentUser,
    session: SessionDep,
    storage: StorageDep,
    signal: WorkSignalDep,
    background: BackgroundTasks,
) -> BulkResults:
    """Apply one action to several jobs; each job succeeds or fails on its own."""
    results = []
    for job_id in body.job_ids:
        try:
            job = get_job_for(session, job_id, user)
            _bulk_one(session, job, body)
            session.commit()
            if body.action == "delete":
                background.add_task(storage.remove_job_files, job_id)
            results.append(BulkResult(job_id=job_id, ok=True))
        except FarmError as exc:
            session.rollback()
            results.append(BulkResult(job_id=job_id, ok=False, code=exc.code, message=exc.message))
    signal.notify()
    return BulkResults(results=results)


def _bulk_one(session: Session, job: Job, body: BulkAction) -> None:
    match body.action:
        case "pause":
            pause_job(session, job)
        case "resume":
            resume_job(session, job)
        case "cancel":
            cancel_job(session, job)
        case "requeue":
            requeue_job(session, job, failed_only=False)
        case "requeue-failed":
            requeue_job(session, job, failed_only=True)
        case "delete":
            delete_job(session, job)
        case "priority":
            if body.priority is None:
                raise InvalidInput("the priority action needs a priority", code="invalid_input")
            set_priority(job, body.priority)
            session.add(job)
