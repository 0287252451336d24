"""Errors as pages for a browser that opened a page; everyone else keeps the JSON shape.

A script, htmx fragment or API client gets ``{"code", "message"}`` as before; a person who
followed a link to someone else's job or an admin page sees the same message on a page with
a way back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from manager.errors import FarmError
from manager.web.templating import render

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]
TITLES = {403: "Not for you", 404: "Not found", 409: "Not now", 422: "Not quite"}


def wants_page(request: Request) -> bool:
    path = request.url.path
    return (
        request.method == "GET"
        and not path.startswith(("/api/", "/static/", "/docs", "/openapi"))
        and "text/html" in request.headers.get("accept", "")
        and not request.headers.get("HX-Request")
    )


def _as_page(json_handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if wants_page(request):
            status = getattr(exc, "status_code", 500)
            message = exc.message if isinstance(exc, FarmError) else str(getattr(exc, "detail", ""))
            context = {"status": status, "title": TITLES.get(status, "Something went wrong")}
            return render(request, "error.html", {**context, "message": message}, status)
        answer = json_handler(request, exc)
        return await answer if isinstance(answer, Awaitable) else answer

    return handle


def install_error_pages(app: FastAPI) -> None:
    """Wrap the JSON handlers the app already has for farm and HTTP errors."""
    for error in (FarmError, StarletteHTTPException):
        app.add_exception_handler(error, _as_page(app.exception_handlers[error]))
