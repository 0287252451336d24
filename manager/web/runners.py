"""The runners page: state, current task and progress, tags, Blender; enable, disable, tag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from manager.admin import get_runner, set_runner_enabled
from manager.deps import SessionDep, WorkSignalDep
from manager.models import Job, Runner, Task
from manager.schemas import RowId
from manager.web.access import WebAdmin, WebUser
from manager.web.templating import flash, render
from shared.wire import RunnerStatus, TaskStatus

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class RunnerRow:
    id: int
    name: str
    state: str  # idle, working, offline, disabled
    status: str
    enabled: bool
    task: str | None
    job_id: int | None
    progress: tuple[int, int] | None
    last_seen_at: datetime | None
    tags: list[str]
    devices: list[str]
    blender_versions: list[str]
    platform: str
    version: str


def _device_name(device: object) -> str:
    """'AMD EPYC (CPU)' from a probed Cycles device."""
    if isinstance(device, dict):
        name, kind = device.get("name") or device.get("id") or "?", device.get("type")
        return f"{name} ({kind})" if kind else str(name)
    return str(device)


def _blender_versions(blender: dict[str, Any]) -> list[str]:
    """'5.0.1 (bpy)' from what the runner registered with."""
    version = blender.get("version")
    if not version:
        return []
    kind = blender.get("kind")
    return [f"{version} ({kind})" if kind else str(version)]


def runner_rows(session: Session) -> list[RunnerRow]:
    active = session.exec(
        select(Task, Job.name)
        .join(Job, col(Job.id) == col(Task.job_id))
        .where(Task.status == TaskStatus.ACTIVE)
    ).all()
    by_runner = {task.runner_id: (task, job_name) for task, job_name in active}
    rows = []
    for runner in session.exec(select(Runner).order_by(col(Runner.name))).all():
        current = by_runner.get(runner.id)
        state = runner.status
        if not runner.enabled and runner.status != RunnerStatus.OFFLINE:
            state = "disabled"
        rows.append(
            RunnerRow(
                id=runner.id or 0,
                name=runner.name,
                state=state,
                status=runner.status,
                enabled=runner.enabled,
                task=f"{current[1]} · {current[0].name}" if current else None,
                job_id=current[0].job_id if current else None,
                progress=(current[0].frames_done, len(current[0].frames)) if current else None,
                last_seen_at=runner.last_seen_at,
                tags=list(runner.tags),
                # runners that probe their Cycles devices send them with the Blender info
                devices=[_device_name(d) for d in runner.blender.get("devices", [])],
                blender_versions=_blender_versions(runner.blender),
                platform=runner.platform,
                version=runner.version,
            )
        )
    return rows


@router.get("/runners", response_class=HTMLResponse)
def runners_page(request: Request, user: WebUser, session: SessionDep) -> HTMLResponse:
    return render(request, "runners.html", {"user": user, "runners": runner_rows(session)})


@router.get("/runners/rows", response_class=HTMLResponse)
def runners_rows(request: Request, user: WebUser, session: SessionDep) -> HTMLResponse:
    return render(request, "_runner_rows.html", {"user": user, "runners": runner_rows(session)})


@router.post("/runners/{runner_id}/enable", response_class=HTMLResponse)
def enable(
    request: Request, runner_id: RowId, admin: WebAdmin, session: SessionDep, signal: WorkSignalDep
) -> HTMLResponse:
    runner = get_runner(session, runner_id)
    set_runner_enabled(session, runner, True)
    session.commit()
    signal.notify()
    return flash(request, f"{runner.name} takes work again.", refresh="runners-changed")


@router.post("/runners/{runner_id}/disable", response_class=HTMLResponse)
def disable(
    request: Request, runner_id: RowId, admin: WebAdmin, session: SessionDep
) -> HTMLResponse:
    runner = get_runner(session, runner_id)
    set_runner_enabled(session, runner, False)
    session.commit()
    return flash(
        request,
        f"{runner.name} finishes its current task, then takes no more.",
        refresh="runners-changed",
    )


@router.get("/runners/{runner_id}/tags", response_class=HTMLResponse)
def tags_form(
    request: Request, runner_id: RowId, admin: WebAdmin, session: SessionDep
) -> HTMLResponse:
    return render(request, "_runner_tags.html", {"runner": get_runner(session, runner_id)})


@router.post("/runners/{runner_id}/tags", response_class=HTMLResponse)
def set_tags(
    request: Request,
    runner_id: RowId,
    admin: WebAdmin,
    session: SessionDep,
    signal: WorkSignalDep,
    tags: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Comma-separated tags; a runner that registers without tags keeps these."""
    runner = get_runner(session, runner_id)
    runner.tags = sorted({t.strip() for t in tags.split(",") if t.strip()})
    session.add(runner)
    session.commit()
    signal.notify()
    shown = ", ".join(runner.tags) or "no tags"
    return flash(request, f"{runner.name} now has {shown}.", refresh="runners-changed")
