"""Who is looking at a page: the signed-in user, or a redirect to the sign-in page."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from manager.deps import Credentials, SessionDep, get_current_user
from manager.errors import Forbidden, Unauthorized
from manager.models import User


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def get_web_user(request: Request, session: SessionDep, credentials: Credentials) -> User:
    try:
        return get_current_user(request, session, credentials)
    except Unauthorized as exc:
        if credentials is not None:
            raise  # a script with a wrong key wants the 401, not the sign-in page
        raise SignInRequired(request.url.path) from exc


WebUser = Annotated[User, Depends(get_web_user)]


def get_web_admin(user: WebUser) -> User:
    if not user.is_admin:
        raise Forbidden("only admins may see this page; ask one of them", code="admin_only")
    return user


WebAdmin = Annotated[User, Depends(get_web_admin)]


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    if request.headers.get("HX-Request"):
        # A poll of a fragment: come back to the page it was part of, with a full page load
        # (htmx follows HX-Redirect) rather than the sign-in page swapped into a table.
        page = urlsplit(request.headers.get("HX-Current-URL", "")).path or "/jobs"
        return Response(status_code=204, headers={"HX-Redirect": _sign_in_url(page)})
    return RedirectResponse(_sign_in_url(exc.next_path), status_code=303)


def _sign_in_url(next_path: str) -> str:
    return f"/signin?next={quote(next_path)}"


def install_sign_in_redirect(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _to_sign_in)
