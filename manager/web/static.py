"""The page's own files (CSS, htmx, a little JavaScript), served as plain GET routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from manager.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound(f"there is no static file {name!r}", code="not_found")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(path.suffix, "text/plain"),
        headers={"Cache-Control": "public, max-age=300"},
    )
