"""The web page: server-rendered Jinja2 templates, live through HTMX, no build step.

manager/web/
├── access.py        the signed-in user of a page, or a redirect to /signin
├── error_pages.py   errors as pages for browsers, JSON for everyone else
├── templating.py    templates and their filters (ago, duration, filesize)
├── flash.py         the message an action leaves, and the refresh event it fires
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
└── static.py        /static: CSS, app.js and the vendored htmx
"""

from __future__ import annotations

from fastapi import FastAPI

from manager.web import (
    admin_pages,
    events,
    job_page,
    jobs_list,
    runners,
    signin,
    static,
    submit,
)
from manager.web.access import install_sign_in_redirect
from manager.web.error_pages import install_error_pages
from manager.web.templating import make_templates


def install_web(app: FastAPI) -> None:
    """Add the pages to the app (after the API routers, which own /api)."""
    app.state.web_templates = make_templates()
    install_sign_in_redirect(app)
    install_error_pages(app)
    for module in (static, signin, submit, jobs_list, job_page, runners, admin_pages, events):
        app.include_router(module.router)
