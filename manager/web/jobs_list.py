"""The jobs list: filters, live rows with progress and ETA, and bulk actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlmodel import Session, col, select

from manager.deps import Credentials, SessionDep, StorageDep, WorkSignalDep
from manager.errors import FarmError
from manager.job_control import (
    cancel_job,
    delete_job,
    pause_job,
    requeue_job,
    resume_job,
    set_priority,
)
from manager.jobs import get_job_for
from manager.models import Job, User
from manager.web.access import WebUser, get_web_user
from manager.web.job_view import summarize_jobs
from manager.web.recent import RUNNING_SECONDS, Recent, job_versions, seconds_for
from manager.web.templating import age, flash, render, render_text
from shared.wire import JobStatus

router = APIRouter(include_in_schema=False)

STATUS_FILTERS = ("", *[s.value for s in JobStatus])
BULK_ACTIONS: dict[str, Callable[[Session, Job], object]] = {
    "pause": pause_job,
    "resume": resume_job,
    "cancel": cancel_job,
    "requeue-failed": lambda s, j: requeue_job(s, j, failed_only=True),
    "delete": delete_job,
}


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


PAGE_SIZE = 50
"""Jobs per page of the list, newest first: the rows are rendered again every 1.5 s."""

Page = Annotated[int, Query(ge=1, le=1_000_000, description="1 is the newest jobs")]


def _page_of_jobs(
    session: Session, user: User, status: str, scope: str, page: int
) -> tuple[list[Job], bool]:
    """One page of jobs, and whether there are older ones."""
    query = (
        select(Job).order_by(col(Job.id).desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    )
    if scope != "all":
        query = query.where(Job.owner_id == user.id)
    if status:
        query = query.where(Job.status == status)
    jobs = list(session.exec(query).all())
    return jobs[:PAGE_SIZE], len(jobs) > PAGE_SIZE


def _scope(user: User, scope: str) -> str:
    return scope if user.is_admin and scope == "all" else "mine"


def _list_context(
    request: Request,
    session: Session,
    user: User,
    status: str,
    scope: str,
    selected: list[int],
    page: int = 1,
) -> dict[str, object]:
    scope = _scope(user, scope)
    jobs, older = _page_of_jobs(session, user, status, scope, page)
    return {
        "user": user,
        "jobs": summarize_jobs(session, jobs, request.app.state.web_recent),
        "status": status,
        "scope": scope,
        "statuses": STATUS_FILTERS,
        "selected": set(selected),
        "page": page,
        "older": older,
    }


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    status: str = "",
    scope: str = "mine",
    page: Page = 1,
) -> HTMLResponse:
    return render(
        request, "jobs.html", _list_context(request, session, user, status, scope, [], page)
    )


@router.get("/jobs/rows", response_class=HTMLResponse)
def job_rows(
    request: Request,
    session: SessionDep,
    credentials: Credentials,
    status: str = "",
    scope: str = "mine",
    job_id: Annotated[list[int] | None, Query()] = None,
    page: Page = 1,
) -> HTMLResponse:
    """The table body alone, polled every 1.5 s; ticked boxes stay ticked. The same rows of
    the same jobs' versions are rendered once for everybody who polls them."""
    user = get_web_user(request, session, credentials)  # (in this thread: see ``job_live``)
    scope = _scope(user, scope)
    jobs, older = _page_of_jobs(session, user, status, scope, page)
    recent: Recent = request.app.state.web_recent
    versions = job_versions(jobs)
    now = datetime.now(UTC)
    selected = frozenset(job_id or [])
    shown = tuple((job.id, versions[job.id or 0], age(job.created_at, now)) for job in jobs)

    def render_rows() -> str:
        summaries = summarize_jobs(session, jobs, recent, versions)
        context = {"jobs": summaries, "scope": scope, "selected": selected}
        return render_text(request, "_job_rows.html", context)

    key = ("rows", status, scope, page, older, selected, shown)
    seconds = min((seconds_for(job) for job in jobs), default=RUNNING_SECONDS)
    return HTMLResponse(recent.kept(key, str, seconds, render_rows))


@router.post("/jobs/bulk", response_class=HTMLResponse)
def bulk(
    request: Request,
    user: WebUser,
    session: SessionDep,
    storage: StorageDep,
    signal: WorkSignalDep,
    background: BackgroundTasks,
    action: Annotated[str, Form()],
    job_id: Annotated[list[int] | None, Form()] = None,
    priority: Annotated[str, Form(max_length=10)] = "",
) -> HTMLResponse:
    """One action on every ticked job; each succeeds or fails on its own."""
    if not job_id:
        return flash(request, "Tick one or more jobs first.", kind="error")
    if action != "priority" and action not in BULK_ACTIONS:
        return flash(request, f"Unknown action {action!r}.", kind="error")
    # the priority box is sent, usually empty, with every action; only this one reads it
    level = int(priority) if priority.strip().isdigit() else None
    if action == "priority" and (level is None or level > 100):
        return flash(request, "Enter a priority between 0 and 100 first.", kind="error")
    done, problems = 0, []
    for one in job_id:
        try:
            job = get_job_for(session, one, user)
            if action == "priority":
                assert level is not None
                set_priority(job, level)
                session.add(job)
            else:
                BULK_ACTIONS[action](session, job)
            session.commit()
            if action == "delete":
                background.add_task(storage.remove_job_files, one)
            done += 1
        except FarmError as exc:
            session.rollback()
            problems.append(f"job {one}: {exc.message}")
    signal.notify()
    message = f"{action.replace('-', ' ').capitalize()}: {done} job(s) done."
    if problems:
        message += " Not done — " + "; ".join(problems)
    return flash(request, message, kind="error" if problems else "ok", refresh="jobs-changed")
