"""Jinja2 templates, the filters pages share, ``render`` for routes, and ``flash`` for actions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from manager import __version__

TEMPLATES_DIR = Path(__file__).parent / "templates"
OUTPUTS_WHILE_RENDERING = 30  # the job page polls; a long list waits until the job is done


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if moment is None:
        return "never"
    seconds = max(0.0, ((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """``ago`` to the minute ('just now' under one): a list polled by many viewers is
    rendered once for all of them and again only when something in it changes."""
    if moment is not None and ((now or datetime.now(UTC)) - moment).total_seconds() < 60:
        return "just now"
    return ago(moment, now)


def duration(seconds: float | None) -> str:
    """'0.4 s', '42 s', '3 min 05 s', '2 h 07 min'."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def timestamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def filesize(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    # Templates are part of the installed package: no look at their files on every render
    # (that look cost a tenth of the manager's CPU with the page polled by 50 viewers).
    env.auto_reload = False
    env.filters.update(ago=ago, age=age, duration=duration, timestamp=timestamp, filesize=filesize)
    env.globals["version"] = __version__
    env.globals["OUTPUTS_WHILE_RENDERING"] = OUTPUTS_WHILE_RENDERING
    return templates


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.web_templates
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def render_text(request: Request, name: str, context: dict[str, Any]) -> str:
    """A template rendered to text, as ``render`` would answer it, to keep or send."""
    templates: Jinja2Templates = request.app.state.web_templates
    return templates.get_template(name).render({"request": request, **context})


def flash(request: Request, message: str, *, kind: str = "ok", refresh: str = "") -> HTMLResponse:
    """The short message an action leaves, swapped into ``#flash``; ``refresh`` names an event
    that makes the page's live regions reload at once."""
    response = render(request, "_flash.html", {"message": message, "kind": kind})
    if refresh:
        response.headers["HX-Trigger"] = refresh
    return response
