"""The sign-in page: the password form (when local accounts are on) and one button per provider."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from manager.auth.providers import configured_providers
from manager.auth.settings import localauth_enabled, registration_open
from manager.deps import SessionDep
from manager.web.templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(path: str) -> str:
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, session: SessionDep, next: str = "/jobs") -> HTMLResponse:
    target = _safe_next(next)
    providers = [
        {
            "label": p.label,
            "url": request.app.url_path_for("oauth_login", provider=p.name) + f"?next={target}",
        }
        for p in configured_providers(session).values()
    ]
    return render(
        request,
        "signin.html",
        {
            "next": target,
            "localauth": localauth_enabled(session),
            "registration": registration_open(session),
            "providers": providers,
        },
    )
