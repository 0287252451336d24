"""Runner API: register, heartbeat, claim (long poll), progress, outputs, complete, fail.

Only runner API keys reach these endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.datastructures import State

from manager.completion import Finished, finish_task
from manager.db import session_scope
from manager.deps import RunnerKeyDep, SessionDep, SettingsDep, StorageDep, WorkSignalDep
from manager.dispatch import (
    active_task,
    attempt_claim,
    beat,
    report_progress,
    runner_for,
    seen,
)
from manager.errors import Conflict, Forbidden, InvalidInput, NotFound
from manager.failures import fail_task
from manager.job_control import release_task
from manager.models import (
    ApiKey,
    Blob,
    Job,
    Output,
    Runner,
    Task,
    utcnow,
)
from manager.outputs import job_of_active_task, record_output
from manager.scheduler import ClaimingRunner
from manager.schemas import (
    ClaimedTask,
    HeartbeatReply,
    OutputPublic,
    OutputsPublic,
    ProgressReply,
    RowId,
    RunnerRegister,
    RunnerRegistered,
    TaskFailure,
    TaskProgress,
)
from manager.signals import WorkSignal
from manager.storage import safe_relative_path
from shared.hashing import is_sha256
from shared.wire import RunnerStatus, TaskStatus

router = APIRouter(prefix="/api/runner", tags=["runner"])
MAX_CLAIM_WAIT = 60.0


@router.post("/register", response_model=RunnerRegistered)
def register(
    body: RunnerRegister,
    key: RunnerKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    signal: WorkSignalDep,
) -> RunnerRegistered:
    """Register (or re-register after a restart) a runner by name."""
    runner = session.exec(select(Runner).where(Runner.name == body.name)).first()
    if runner is None:
        runner = Runner(name=body.name)
    elif runner.api_key_id not in (None, key.id):
        raise Conflict(
            f"a runner named {body.name!r} belongs to another API key; pick another --name",
            code="runner_name_taken",
        )
    runner.api_key_id = key.id
    runner.version = body.version
    runner.platform = body.platform
    runner.blender = body.blender.model_dump() if body.blender else {}
    if body.blender_versions or body.devices:
        runner.blender |= {"versions": body.blender_versions, "devices": body.devices}
    runner.task_types = list(body.task_types)
    runner.capabilities = sorted(set(body.capabilities))
    if body.tags is not None:
        runner.tags = sorted(set(body.tags))
    runner.status = RunnerStatus.IDLE.value
    runner.last_seen_at = utcnow()
    session.add(runner)
    session.flush()
    # A runner that registers again has restarted: whatever it was doing is lost.
    orphans = session.exec(
        select(Task).where(Task.runner_id == runner.id, Task.status == TaskStatus.ACTIVE)
    ).all()
    for task in orphans:
        job = session.get(Job, task.job_id)
        assert job is not None
        release_task(session, task, job, reason=f"runner {runner.name} restarted")
    session.commit()
    signal.notify(len(orphans))
    assert runner.id is not None
    return RunnerRegistered(
        id=runner.id,
        name=runner.name,
        heartbeat_interval=settings.heartbeat_interval,
        runner_timeout=settings.runner_timeout,
    )


@router.post("/{runner_id}/heartbeat", response_model=HeartbeatReply)
async def heartbeat(runner_id: RowId, key: RunnerKeyDep, request: Request) -> HeartbeatReply:
    """Keep the runner online and extend its task leases; lists the tasks it must stop."""
    return await runner_heartbeat(request.app.state, runner_id, key)


async def runner_heartbeat(state: State, runner_id: int, key: ApiKey) -> HeartbeatReply:
    """The heartbeat (shared with ``manager.fast_lane``)."""
    stop = await state.hot_lane.run(
        beat, state.hot_lane.write_engine, runner_id, key, state.settings.runner_timeout
    )
    return HeartbeatReply(canceled_tasks=stop)


@router.post(
    "/{runner_id}/claim",
    response_model=ClaimedTask,
    responses={204: {"description": "no task became runnable while waiting"}},
)
async def claim(
    runner_id: RowId,
    key: RunnerKeyDep,
    request: Request,
    wait: float = 30.0,
    warm_job: RowId | None = None,
    completed: RowId | None = None,
) -> ClaimedTask | Response:
    """Long poll: answer with a task as soon as one is runnable, or 204 after ``wait`` s.

    ``warm_job``: the job the runner keeps a Blender session for; among equal priorities
    its tasks go first. ``completed``: a task of this runner's to complete first, as
    ``…/tasks/{completed}/complete`` does (with its errors, and then no claim): a runner
    that finished a task asks for the next in the same request."""
    task = await long_poll_claim(
        request.app.state, runner_id, key, wait, warm_job, request.is_disconnected, completed
    )
    return task if task is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


async def long_poll_claim(
    state: State,
    runner_id: int,
    key: ApiKey,
    wait: float,
    warm_job: int | None,
    disconnected: Callable[[], Awaitable[bool]],
    completed: int | None = None,
) -> ClaimedTask | None:
    """The claim's long poll (shared with ``manager.fast_lane``): a task, or None.

    With ``completed``, that task is completed first, and the runners woken for what it
    unblocked are those it takes besides this one: in a chain of tasks the runner that
    finished one takes the next itself, and no other runner is sent to look in vain.
    """
    signal: WorkSignal = state.work_signal
    deadline = time.monotonic() + max(0.0, min(wait, MAX_CLAIM_WAIT))
    unblocked: list[int] = []
    runner: ClaimingRunner | None = None
    if completed is not None:
        finished = await _finish(state, runner_id, key, completed)
        unblocked, runner = finished.unblocked, finished.runner
    woken_with: int | None = None
    while True:
        ticket = signal.ticket()  # queue up before looking, so no wake-up is missed
        with state.metrics.claim_seconds.time():
            runner, task, others_may = await state.hot_lane.run_claim(
                attempt_claim,
                state.hot_lane.engine,
                runner_id,
                key,
                runner,
                state.settings.runner_timeout,
                woken_with is not None,
                warm_job,
            )
        if unblocked:  # (on the first attempt only)
            signal.notify(len(unblocked) - (task is not None and task.id in unblocked))
            unblocked = []
        if task is not None:
            signal.discard(ticket)
            if await disconnected():  # (it would sit on a runner that is gone until timeout)
                await run_in_threadpool(_hand_back, state.write_engine, runner_id, task.id)
                signal.notify(1)
                return None
            return task
        if woken_with is not None and others_may:
            signal.pass_on(woken_with)  # woken for work this runner may not take
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await disconnected():
            signal.discard(ticket)
            return None
        # Other manager processes (several behind one PostgreSQL) cannot wake this one:
        # look again every few seconds.
        woken_with = await signal.wait(ticket, min(remaining, 5.0))
        if await disconnected():  # a runner that hung up (shut down) while it waited
            if woken_with is not None:
                signal.hand_on(woken_with)  # the work it was woken for goes to another
            else:
                signal.discard(ticket)
            return None


def _hand_back(engine: Engine, runner_id: int, task_id: int) -> None:
    """Requeue a task claimed for a runner that hung up before the answer reached it."""
    with session_scope(engine) as session:
        task = session.get(Task, task_id)
        if task is None or task.status != TaskStatus.ACTIVE or task.runner_id != runner_id:
            return
        job = session.get(Job, task.job_id)
        runner = session.get(Runner, runner_id)
        assert job is not None and runner is not None
        release_task(session, task, job, reason=f"{runner.name} hung up before it got the task")
        runner.status = RunnerStatus.IDLE.value
        session.add(runner)


@router.post("/{runner_id}/tasks/{task_id}/progress", response_model=ProgressReply)
async def progress(
    runner_id: RowId, task_id: RowId, body: TaskProgress, key: RunnerKeyDep, request: Request
) -> ProgressReply:
    """Report progress and log lines; the answer says whether to keep running."""
    return await runner_progress(request.app.state, runner_id, key, task_id, body)


async def runner_progress(
    state: State, runner_id: int, key: ApiKey, task_id: int, report: TaskProgress
) -> ProgressReply:
    """The progress report (shared with ``manager.fast_lane``)."""
    return await state.hot_lane.run(
        report_progress,
        state.hot_lane.write_engine,
        runner_id,
        key,
        task_id,
        report,
        state.settings.runner_timeout,
        state.storage.task_log_path,
    )


@router.put("/{runner_id}/tasks/{task_id}/outputs/{name:path}", status_code=201)
async def upload_output(
    runner_id: RowId,
    task_id: RowId,
    name: str,
    request: Request,
    key: RunnerKeyDep,
    settings: SettingsDep,
    storage: StorageDep,
    x_checksum_sha256: Annotated[str, Header(description="SHA-256 of the body, hex")],
    x_frame: Annotated[int | None, Header()] = None,
) -> dict[str, str | int]:
    """Stream one output file (an EXR frame) into storage, verified against its hash."""
    state = request.app.state
    clean = safe_relative_path(name)
    expected = x_checksum_sha256.lower()
    if not is_sha256(expected):
        raise InvalidInput("X-Checksum-SHA256 must be a hex SHA-256", code="invalid_checksum")
    job_id = await state.hot_lane.run(
        job_of_active_task, state.hot_lane.engine, runner_id, key, task_id
    )
    with storage.temp_file() as (temp, temp_path):
        sha256, size = await storage.stream_to_temp(
            request.stream(), temp, max_bytes=settings.max_upload_bytes
        )
        if sha256 != expected:
            raise InvalidInput(
                f"upload of {clean!r} arrived damaged (SHA-256 mismatch); send it again",
                code="checksum_mismatch",
            )
        await run_in_threadpool(storage.commit_output, temp_path, job_id, clean)
    await state.hot_lane.run(
        record_output, state.hot_lane.write_engine, job_id, task_id, clean, x_frame, size, sha256
    )
    return {"name": clean, "size": size, "sha256": sha256}


@router.post("/{runner_id}/tasks/{task_id}/complete", status_code=204)
async def complete(
    runner_id: RowId, task_id: RowId, request: Request, key: RunnerKeyDep
) -> Response:
    """Finish a task; a render task must have delivered every frame."""
    await complete_task(request.app.state, runner_id, key, task_id)
    return Response(status_code=204)


async def complete_task(state: State, runner_id: int, key: ApiKey, task_id: int) -> None:
    """Complete the task and wake runners for what it unblocked (shared with the fast lane)."""
    finished = await _finish(state, runner_id, key, task_id)
    state.work_signal.notify(len(finished.unblocked))


async def _finish(state: State, runner_id: int, key: ApiKey, task_id: int) -> Finished:
    """Complete the runner's task."""
    lane = state.hot_lane
    finished = await lane.run(finish_task, lane.engine, lane.write_engine, runner_id, key, task_id)
    state.metrics.tasks_completed.inc()
    return finished


@router.post("/{runner_id}/tasks/{task_id}/fail", status_code=204)
def fail(
    runner_id: RowId,
    task_id: RowId,
    body: TaskFailure,
    request: Request,
    key: RunnerKeyDep,
    session: SessionDep,
    settings: SettingsDep,
    signal: WorkSignalDep,
) -> Response:
    """Report a failed attempt; the task is retried until it runs out of attempts."""
    runner = runner_for(session, runner_id, key)
    task, job = active_task(session, runner, task_id)
    fail_task(session, task, job, runner, body.reason)
    runner.status = RunnerStatus.IDLE.value
    seen(session, runner, settings.runner_timeout)
    session.commit()
    request.app.state.metrics.tasks_failed.inc()
    signal.notify(1)
    return Response(status_code=204)


@router.post("/{runner_id}/tasks/{task_id}/release", status_code=204)
def release(
    runner_id: RowId,
    task_id: RowId,
    body: TaskFailure,
    key: RunnerKeyDep,
    session: SessionDep,
    signal: WorkSignalDep,
) -> Response:
    """Hand a task back unfinished (the runner is shutting down); it is requeued at once."""
    runner = runner_for(session, runner_id, key)
    task, job = active_task(session, runner, task_id, stopping_ok=True)
    release_task(session, task, job, reason=f"{runner.name}: {body.reason}")
    runner.status = RunnerStatus.IDLE.value
    session.add(runner)
    session.commit()
    signal.notify(1)
    return Response(status_code=204)


def _job_of_runner(session: Session, runner_id: int, key: ApiKey, job_id: int) -> Job:
    """A job the runner is working on right now (it may read that job's outputs)."""
    runner = runner_for(session, runner_id, key)
    working = session.exec(
        select(Task.id).where(
            Task.job_id == job_id, Task.runner_id == runner.id, Task.status == TaskStatus.ACTIVE
        )
    ).first()
    job = session.get(Job, job_id)
    if job is None or working is None:
        raise Forbidden(
            f"runner {runner.name} has no active task of job {job_id}", code="not_yours"
        )
    return job


@router.get("/{runner_id}/jobs/{job_id}/outputs", response_model=OutputsPublic)
def job_outputs(
    runner_id: RowId, job_id: RowId, key: RunnerKeyDep, session: SessionDep
) -> OutputsPublic:
    """The outputs of a job this runner works on (an encode task reads the EXR frames)."""
    _job_of_runner(session, runner_id, key, job_id)
    outputs = session.exec(select(Output).where(Output.job_id == job_id)).all()
    items = [
        OutputPublic(
            name=o.name,
            frame=o.frame,
            size=o.size,
            sha256=o.sha256,
            created_at=o.created_at,
            url=f"/api/runner/{runner_id}/jobs/{job_id}/outputs/{o.name}",
        )
        for o in outputs
    ]
    return OutputsPublic(outputs=items, count=len(items))


@router.get("/{runner_id}/jobs/{job_id}/outputs/{name:path}", response_class=FileResponse)
def job_output_file(
    runner_id: RowId,
    job_id: RowId,
    name: str,
    key: RunnerKeyDep,
    session: SessionDep,
    storage: StorageDep,
) -> FileResponse:
    _job_of_runner(session, runner_id, key, job_id)
    path = storage.output_path(job_id, safe_relative_path(name))
    if not path.is_file():
        raise NotFound(f"job {job_id} has no output {name!r}", code="output_not_found")
    return FileResponse(path, media_type="application/octet-stream")


@router.get("/blobs/{sha256}", response_class=FileResponse)
def download_blob(
    sha256: str, key: RunnerKeyDep, session: SessionDep, storage: StorageDep
) -> FileResponse:
    """A job file by its hash, for the runner's workspace cache."""
    if not is_sha256(sha256) or session.get(Blob, sha256) is None:
        raise NotFound(f"no blob {sha256}", code="blob_not_found")
    path = storage.blob_path(sha256)
    if not path.is_file():
        raise NotFound(f"blob {sha256} is missing from storage", code="blob_not_found")
    return FileResponse(path, media_type="application/octet-stream")
