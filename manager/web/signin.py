"""The sign-in page: the password form (when local accounts are on), a sign-up form (when
registration is open) and one button per provider.

The forms post to ``/signin`` and ``/signin/register``, which go through the same code as
``POST /api/auth/login`` and ``…/register`` (rate limits, password policy, session and CSRF
cookies) and then send the browser on; they work before, or without, any script on the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from manager.auth.providers import configured_providers
from manager.auth.schemas import LoginRequest, RegisterRequest
from manager.auth.settings import localauth_enabled, registration_open
from manager.deps import SessionDep
from manager.errors import FarmError
from manager.routers.auth import login, register
from manager.web.templating import render

router = APIRouter(include_in_schema=False)


def _safe_next(path: str) -> str:
    """Only a path on this farm: an open redirect would help phishing."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _page(
    request: Request,
    session: SessionDep,
    target: str,
    *,
    email: str = "",
    error: str = "",
    signing_up: bool = False,
) -> HTMLResponse:
    providers = [
        {
            "label": p.label,
            "url": request.app.url_path_for("oauth_login", provider=p.name) + f"?next={target}",
        }
        for p in configured_providers(session).values()
    ]
    context = {
        "next": target,
        "localauth": localauth_enabled(session),
        "registration": registration_open(session),
        "providers": providers,
        "email": email,
        "error": error,
        "signing_up": signing_up,
    }
    return render(request, "signin.html", context, status_code=401 if error else 200)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, session: SessionDep, next: str = "/jobs") -> HTMLResponse:
    return _page(request, session, _safe_next(next))


@router.post("/signin", response_class=HTMLResponse)
def signin_form(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/jobs",
) -> Response:
    target = _safe_next(next)
    onward = RedirectResponse(target, status_code=303)
    try:
        credentials = LoginRequest(email=email, password=password)
    except ValidationError:
        return _page(request, session, target, email=email, error="Enter your email address.")
    try:
        login(credentials, request, onward, session)  # sets the cookies on ``onward``
    except FarmError as exc:
        session.rollback()
        error = exc.message[:1].upper() + exc.message[1:]
        answer = _page(request, session, target, email=email, error=error)
        answer.status_code = exc.status_code
        return answer
    return onward


@router.post("/signin/register", response_class=HTMLResponse)
def register_form(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    name: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/jobs",
) -> Response:
    target = _safe_next(next)
    onward = RedirectResponse(target, status_code=303)
    try:
        details = RegisterRequest(email=email, password=password, name=name)
    except ValidationError:
        return _page(
            request,
            session,
            target,
            email=email,
            error="Enter your email address.",
            signing_up=True,
        )
    try:
        register(details, request, onward, session)
    except FarmError as exc:
        session.rollback()
        error = exc.message[:1].upper() + exc.message[1:]
        answer = _page(request, session, target, email=email, error=error, signing_up=True)
        answer.status_code = exc.status_code
        return answer
    return onward
