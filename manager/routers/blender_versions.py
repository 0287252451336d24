"""Blender builds stored on the manager: listed for users, listed and served to runners."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from manager.blender_versions import BlenderBuild, BlenderVersions
from manager.deps import CurrentUser, RunnerKeyDep, StorageDep

router = APIRouter(tags=["blender versions"])


def _public(build: BlenderBuild) -> dict[str, Any]:
    return {
        "sha256": build.sha256,
        "version": build.version,
        "platform": build.platform,
        "filename": build.filename,
        "size": build.size,
        "entry": build.entry,
        "added_at": build.added_at,
    }


@router.get("/api/blender/versions")
async def list_blender_versions(user: CurrentUser, storage: StorageDep) -> dict[str, Any]:
    """The Blender builds runners can download (add one: `framefarm manager blender add`)."""
    builds = await run_in_threadpool(BlenderVersions(storage.root).list)
    return {"versions": [_public(b) for b in builds]}


@router.get("/api/runner/blender/versions")
async def runner_blender_versions(key: RunnerKeyDep, storage: StorageDep) -> dict[str, Any]:
    """The same list, for runners choosing a build for a job's Blender version."""
    builds = await run_in_threadpool(BlenderVersions(storage.root).list)
    return {"versions": [_public(b) for b in builds]}


@router.get("/api/runner/blender/versions/{sha256}/archive")
async def download_blender_build(
    sha256: str, key: RunnerKeyDep, storage: StorageDep
) -> FileResponse:
    """The build's archive; the runner checks it against ``sha256`` before unpacking."""
    versions = BlenderVersions(storage.root)
    build = await run_in_threadpool(versions.get, sha256)
    return FileResponse(
        versions.archive_path(build),
        media_type="application/octet-stream",
        filename=build.filename,
        headers={"X-Checksum-SHA256": build.sha256},
    )
