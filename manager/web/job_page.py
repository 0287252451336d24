"""One job: settings, metadata, frame grid, tasks, log tail, last frame, outputs, actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from sqlmodel import Session, col, select

from manager.deps import Credentials, SessionDep, StorageDep, WorkSignalDep
from manager.errors import FarmError, NotFound
from manager.job_control import cancel_job, delete_job, pause_job, requeue_job, resume_job
from manager.job_control import set_priority as set_job_priority
from manager.jobs import get_job_for, stored_output
from manager.models import Job, JobFile, Output, Task
from manager.schemas import RowId
from manager.storage import Storage, safe_relative_path
from manager.web.access import WebUser, get_web_user
from manager.web.blendinfo import blend_info_of_blob
from manager.web.job_view import job_detail, task_lines
from manager.web.previews import FORMATS, cached_preview
from manager.web.recent import Recent, job_version, seconds_for
from manager.web.templating import flash, render, render_text
from manager.web.zipstream import stream_zip
from shared.wire import JOB_FINISHED, TaskStatus

router = APIRouter(include_in_schema=False)

LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024
ACTIONS: dict[str, tuple[Callable[[Session, Job], object], str]] = {
    "pause": (pause_job, "Paused"),
    "resume": (resume_job, "Resumed"),
    "cancel": (cancel_job, "Canceled"),
    "requeue-failed": (lambda s, j: requeue_job(s, j, failed_only=True), "Requeued failed tasks"),
    "requeue": (lambda s, j: requeue_job(s, j, failed_only=False), "Requeued"),
}


def _blend_info(session: Session, storage: Storage, job: Job) -> object:
    record = session.exec(
        select(JobFile).where(JobFile.job_id == job.id, JobFile.path == job.blend_file)
    ).first()
    if record is None or not storage.has_blob(record.sha256):
        return None
    return blend_info_of_blob(storage.blob_path(record.sha256))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: RowId, user: WebUser, session: SessionDep, storage: StorageDep
) -> HTMLResponse:
    job = get_job_for(session, job_id, user)
    detail = job_detail(session, job, request.app.state.web_recent)
    return render(
        request,
        "job.html",
        {
            "user": user,
            "d": detail,
            "job": detail.summary.job,
            "info": _blend_info(session, storage, job),
            **followed_log(session, storage, job),
        },
    )


def followed_log(session: Session, storage: Storage, job: Job) -> dict[str, object]:
    """The log the job page follows: the running task's, else the newest one written."""
    job_id = job.id or 0
    tasks = task_lines(session, job_id)
    running = [t for t in tasks if t.status == TaskStatus.ACTIVE]
    started = sorted((t for t in tasks if t.started_at), key=lambda t: t.started_at or 0)
    # once nothing runs, the newest log that says something (a quiet last task may have none)
    logged = next(
        (t for t in reversed(started) if storage.task_log_path(job_id, t.id).is_file()), None
    )
    task = running[0] if running else logged or (started[-1] if started else None)
    return {
        "task": task,
        "lines": log_tail(storage, job_id, task.id) if task else [],
        "job_id": job.id,
        "follow": job.status not in JOB_FINISHED,
    }


@router.get("/jobs/{job_id}/log", response_class=HTMLResponse)
def job_log(
    request: Request, job_id: RowId, user: WebUser, session: SessionDep, storage: StorageDep
) -> HTMLResponse:
    """The log panel while it follows whichever task runs now."""
    job = get_job_for(session, job_id, user)
    return render(request, "_log.html", followed_log(session, storage, job))


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
def job_live(
    request: Request, job_id: RowId, session: SessionDep, credentials: Credentials
) -> HTMLResponse:
    """The parts of the job page that change while it renders, polled every 1.5 s: rendered
    once for everybody who polls the same version of the job."""
    # (the viewer is found here rather than by a dependency: one trip to a worker thread,
    # not two, each of which waits its turn on a busy event loop)
    job = get_job_for(session, job_id, get_web_user(request, session, credentials))
    recent: Recent = request.app.state.web_recent
    version = job_version(job)

    def render_live() -> str:
        detail = job_detail(session, job, recent, version)
        return render_text(request, "_job_live.html", {"d": detail, "job": detail.summary.job})

    return HTMLResponse(recent.kept(("live", job_id, version), str, seconds_for(job), render_live))


@router.get("/jobs/{job_id}/tasks/{task_id}/log", response_class=HTMLResponse)
def task_log(
    request: Request,
    job_id: RowId,
    task_id: RowId,
    user: WebUser,
    session: SessionDep,
    storage: StorageDep,
) -> HTMLResponse:
    """The last lines of a task's log."""
    job = get_job_for(session, job_id, user)
    task = session.get(Task, task_id)
    if task is None or task.job_id != job_id:
        raise NotFound(f"job {job_id} has no task {task_id}", code="task_not_found")
    lines = log_tail(storage, job_id, task_id)
    # while the job runs, a way back to following whichever task runs now
    pinned = job.status not in JOB_FINISHED
    context = {"task": task, "lines": lines, "job_id": job_id, "follow": False, "pinned": pinned}
    return render(request, "_log.html", context)


def log_tail(storage: Storage, job_id: RowId, task_id: RowId) -> list[str]:
    """The last lines of a task's log, reading only its end (logs of long tasks grow large)."""
    path = storage.task_log_path(job_id, task_id)
    if not path.is_file():
        return []
    with path.open("rb") as log:
        size = log.seek(0, 2)
        log.seek(max(0, size - LOG_TAIL_BYTES))
        text = log.read().decode(errors="replace")
    return text.splitlines()[-LOG_TAIL_LINES:]


@router.post("/jobs/{job_id}/actions/{action}", response_class=HTMLResponse)
def job_action(
    request: Request,
    job_id: RowId,
    action: str,
    user: WebUser,
    session: SessionDep,
    signal: WorkSignalDep,
    storage: StorageDep,
    background: BackgroundTasks,
) -> Response:
    job = get_job_for(session, job_id, user)
    if action == "delete":
        delete_job(session, job)
        session.commit()
        background.add_task(storage.remove_job_files, job_id)
        return Response(status_code=204, headers={"HX-Redirect": "/jobs"})
    if action not in ACTIONS:
        raise NotFound(f"there is no job action {action!r}", code="unknown_action")
    function, done = ACTIONS[action]
    try:
        function(session, job)
        session.commit()
    except FarmError as exc:
        session.rollback()
        return flash(request, exc.message, kind="error")
    signal.notify()
    return flash(request, f"{done}: {job.name}.", refresh="job-changed")


@router.post("/jobs/{job_id}/priority", response_class=HTMLResponse)
def change_priority(
    request: Request,
    job_id: RowId,
    user: WebUser,
    session: SessionDep,
    signal: WorkSignalDep,
    priority: Annotated[int, Form(ge=0, le=100)],
) -> HTMLResponse:
    job = get_job_for(session, job_id, user)
    set_job_priority(job, priority)
    session.add(job)
    session.commit()
    signal.notify()
    return flash(request, f"Priority of {job.name} is now {priority}.", refresh="job-changed")


@router.get("/jobs/{job_id}/preview/{name:path}")
def preview(
    job_id: RowId,
    name: str,
    user: WebUser,
    session: SessionDep,
    storage: StorageDep,
    format: str = "png",
    width: int | None = None,
) -> FileResponse:
    """An EXR output tone-mapped for the browser (cached; ``format`` png or jpeg)."""
    get_job_for(session, job_id, user)
    clean = safe_relative_path(name)
    found = stored_output(session, storage, job_id, clean)
    if found is None or not clean.lower().endswith(".exr"):
        raise NotFound(f"job {job_id} has no EXR output {clean!r}", code="output_not_found")
    output, path = found
    if format not in FORMATS:
        raise NotFound(f"previews come as {', '.join(FORMATS)}", code="unknown_format")
    width = max(16, min(width, 4096)) if width else None
    image = cached_preview(
        path, output.sha256, storage.job_dir(job_id) / "previews", fmt=format, max_width=width
    )
    return FileResponse(
        image,
        media_type=FORMATS[format][1],
        headers={"Cache-Control": "private, max-age=86400"},
    )


@router.get("/jobs/{job_id}/frames.zip")
def frames_zip(
    job_id: RowId, user: WebUser, session: SessionDep, storage: StorageDep
) -> StreamingResponse:
    """Every EXR frame of the job in one zip, streamed as it is written (videos stay out)."""
    job = get_job_for(session, job_id, user)
    outputs = session.exec(
        select(Output).where(Output.job_id == job_id).order_by(col(Output.name))
    ).all()
    members = [
        (o.name, storage.output_path(job_id, o.name))
        for o in outputs
        if o.name.lower().endswith(".exr") and storage.output_path(job_id, o.name).is_file()
    ]
    filename = f"job-{job_id}-{safe_filename(job.name)}.zip"
    return StreamingResponse(
        stream_zip(members),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def safe_filename(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.")
    return kept[:80] or "frames"
