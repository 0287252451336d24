"""Health and version."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from manager import __version__
from manager.deps import SessionDep
from manager.schemas import VersionPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/api/version", response_model=VersionPublic)
def version() -> VersionPublic:
    return VersionPublic(version=__version__)
