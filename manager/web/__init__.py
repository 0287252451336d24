"""The web page: server-rendered Jinja2 templates, live through HTMX, no build step.

manager/web/
├── access.py        the signed-in user of a page, or a redirect to /signin
├── error_pages.py   errors as pages for browsers, JSON for everyone else
├── templating.py    templates, their filters (ago, duration, filesize), flash messages
├── signin.py        /signin: password form and provider buttons
├── jobs_list.py     /jobs: filters, live rows, bulk actions
├── submit.py        /jobs/new: pick a .blend, see its settings, submit
├── job_page.py      /jobs/{id}: frames, tasks, log, preview, outputs, zip, actions
├── job_view.py      what the job pages show, read from the database
├── eta.py           ETA from the job's measured frame times
├── previews.py      EXR → PNG/JPEG over a checkerboard, cached on disk
├── zipstream.py     every frame in one zip, streamed
├── blendinfo.py     a .blend's render settings without Blender (blender-asset-tracer)
├── runners.py       /runners: state, task, progress, tags; enable, disable, tag
├── admin_pages.py   /admin: users, API keys, settings
├── events.py        WebSocket /api/jobs/ws: job and task events for scripts and the add-on
└── static/          farm.css, app.js, and htmx 2.0.11 from the npm package htmx.org
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from manager.errors import NotFound
from manager.web import (
    admin_pages,
    events,
    job_page,
    jobs_list,
    runners,
    signin,
    submit,
)
from manager.web.access import install_sign_in_redirect
from manager.web.error_pages import install_error_pages
from manager.web.recent import Recent
from manager.web.templating import make_templates


def install_web(app: FastAPI) -> None:
    """Add the pages to the app (after the API routers, which own /api)."""
    app.state.web_templates = make_templates()
    app.state.web_recent = Recent()
    install_sign_in_redirect(app)
    install_error_pages(app)
    app.include_router(static_files)
    for module in (signin, submit, jobs_list, job_page, runners, admin_pages, events):
        app.include_router(module.router)


STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
static_files = APIRouter(include_in_schema=False)


@static_files.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The page's own files: its stylesheet, its script and the vendored htmx."""
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"there is no static file {name!r}", code="not_found")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(path.suffix, "text/plain"),
        headers={"Cache-Control": "public, max-age=300"},
    )
