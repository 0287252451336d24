"""WebSocket ``/api/jobs/ws``: job and task events for scripts, the add-on and pages.

A connection authenticates like the API: ``Authorization: Bearer ff_…`` (a user key), or the
session cookie of a page on this farm (the ``Origin`` must be this farm, so another site
cannot ride on the cookie). It gets the jobs its user may see — optionally only ``?job_id=N``
— first as a snapshot, then as events:

    {"type": "job", "job": {...}}            a job's status, frames done, priority, activity
    {"type": "task", "job_id": N, "task": {...}}   a task's status, runner, frames done, reason
    {"type": "job_deleted", "job_id": N}

Changes are found by reading the database (``updated_at``) once a second, so an event is seen
whichever manager process made the change — several share one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.websockets import WebSocketDisconnect

from manager.apikeys import find_api_key
from manager.auth.sessions import find_session, session_token
from manager.errors import FarmError, Forbidden, Unauthorized, error_response
from manager.jobs import get_job_for, task_counts
from manager.models import Job, Runner, Task, User, utcnow
from manager.schemas import RowId
from shared.wire import ApiKeyScope

router = APIRouter()

POLL_SECONDS = 1.0
# A row's updated_at is set before its transaction commits; look back this far so a commit
# that lands after a poll is still seen, and send each change once.
LOOKBACK = timedelta(seconds=10)


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")


def websocket_user(websocket: WebSocket, session: Session) -> User:
    """The user of the connection, or a FarmError that says how to authenticate."""
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        record = find_api_key(session, header[7:].strip())
        if record is None:
            raise Unauthorized("the API key is unknown or revoked", code="invalid_api_key")
        if record.scope != ApiKeyScope.USER or record.user_id is None:
            raise Forbidden(
                "job events take a user API key, not a runner key", code="wrong_key_scope"
            )
        user = session.get(User, record.user_id)
    else:
        # the cookie helpers read a Request; the handshake carries the same headers
        token = session_token(Request({**websocket.scope, "type": "http", "method": "GET"}))
        if token is None:
            raise Unauthorized(
                "send 'Authorization: Bearer ff_…' (a user key) or open it from a signed-in page",
                code="missing_api_key",
            )
        if not _same_origin(websocket):
            raise Forbidden("a page of another site may not use your session", code="csrf_failed")
        user = find_session(session, token)[1]
    if user is None:
        raise Unauthorized("the user no longer exists", code="invalid_api_key")
    return user


def job_event(session: Session, job: Job) -> dict[str, Any]:
    counts, frames_done = task_counts(session, job.id or 0)
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "priority": job.priority,
        "frames_done": frames_done,
        "frame_count": job.frame_count,
        "tasks": counts.model_dump(),
        "activity": job.activity,
        "failure_reason": job.failure_reason,
        "updated_at": job.updated_at.isoformat(),
    }


def task_event(task: Task, runners: dict[int, str]) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status,
        "runner": runners.get(task.runner_id or 0),
        "frames": list(task.frames),
        "frames_done": task.frames_done,
        "attempts": task.attempts,
        "activity": task.activity,
        "failure_reason": task.failure_reason,
        "updated_at": task.updated_at.isoformat(),
    }


class JobWatch:
    """What one connection has sent, so that each poll sends only what changed."""

    def __init__(self, user: User, job_id: int | None) -> None:
        self.user = user
        self.job_id = job_id
        self.sent_jobs: dict[int, dict[str, Any]] = {}
        self.sent_tasks: dict[int, dict[str, Any]] = {}
        self.since: datetime | None = None

    def _jobs_query(self) -> Any:
        query = select(Job)
        if not self.user.is_admin:
            query = query.where(Job.owner_id == self.user.id)
        if self.job_id is not None:
            query = query.where(Job.id == self.job_id)
        return query

    def poll(self, session: Session) -> list[dict[str, Any]]:
        now = utcnow()
        runners = {r.id or 0: r.name for r in session.exec(select(Runner))}
        job_query = self._jobs_query()
        task_query = select(Task).join(Job, col(Job.id) == col(Task.job_id))
        if not self.user.is_admin:
            task_query = task_query.where(Job.owner_id == self.user.id)
        if self.job_id is not None:
            task_query = task_query.where(Task.job_id == self.job_id)
        if self.since is not None:
            job_query = job_query.where(col(Job.updated_at) >= self.since - LOOKBACK)
            task_query = task_query.where(col(Task.updated_at) >= self.since - LOOKBACK)
        events: list[dict[str, Any]] = []
        touched: set[int] = set()
        for task in session.exec(task_query.order_by(col(Task.job_id), col(Task.task_order))):
            body = task_event(task, runners)
            if self.sent_tasks.get(task.id or 0) != body:
                self.sent_tasks[task.id or 0] = body
                events.append({"type": "task", "job_id": task.job_id, "task": body})
                touched.add(task.job_id)
        jobs = list(session.exec(job_query))
        jobs += [j for j in session.exec(self._jobs_query().where(col(Job.id).in_(touched)))]
        for job in {j.id: j for j in jobs}.values():
            body = job_event(session, job)
            if self.sent_jobs.get(job.id or 0) != body:
                self.sent_jobs[job.id or 0] = body
                events.append({"type": "job", "job": body})
        events += self._deleted(session)
        self.since = now
        return events

    def _deleted(self, session: Session) -> list[dict[str, Any]]:
        known = list(self.sent_jobs)
        if not known:
            return []
        alive = set(session.exec(select(Job.id).where(col(Job.id).in_(known))))
        gone = [job_id for job_id in known if job_id not in alive]
        for job_id in gone:
            del self.sent_jobs[job_id]
        return [{"type": "job_deleted", "job_id": job_id} for job_id in gone]


def _open_watch(websocket: WebSocket, job_id: int | None) -> JobWatch:
    with Session(websocket.app.state.engine, expire_on_commit=False) as session:
        user = websocket_user(websocket, session)
        if job_id is not None:
            get_job_for(session, job_id, user)  # someone else's job: 404, as in the API
        return JobWatch(user, job_id)


def _poll(websocket: WebSocket, watch: JobWatch) -> list[dict[str, Any]]:
    with Session(websocket.app.state.engine, expire_on_commit=False) as session:
        return watch.poll(session)


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # clients have nothing to say; anything they send is ignored


@router.websocket("/api/jobs/ws")
async def job_events(websocket: WebSocket, job_id: RowId | None = None) -> None:
    try:
        watch = await run_in_threadpool(_open_watch, websocket, job_id)
    except FarmError as exc:
        # a plain HTTP answer with the usual error body, before the upgrade
        denial: JSONResponse = error_response(exc.status_code, exc.code, exc.message)
        await websocket.send_denial_response(denial)
        return
    await websocket.accept()
    closed = asyncio.create_task(_until_closed(websocket))
    try:
        snapshot = True
        while not closed.done():
            events = await run_in_threadpool(_poll, websocket, watch)
            if snapshot:
                await websocket.send_json({"type": "snapshot", "events": events})
                snapshot = False
            else:
                for event in events:
                    await websocket.send_json(event)
            await asyncio.wait({closed}, timeout=POLL_SECONDS)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away while we were sending
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await closed
