"""The short message an action leaves at the top of the page, and the event that refreshes."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from manager.web.templating import render


def flash(request: Request, message: str, *, kind: str = "ok", refresh: str = "") -> HTMLResponse:
    """Swapped into ``#flash``; ``refresh`` names an event that makes live regions reload."""
    response = render(request, "_flash.html", {"message": message, "kind": kind})
    if refresh:
        response.headers["HX-Trigger"] = refresh
    return response
