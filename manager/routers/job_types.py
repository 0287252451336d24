"""Job types: their schemas (for forms in the add-on and the web page) and etags."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from manager.deps import CurrentUser, JobTypesDep
from manager.submission import job_type_or_404

router = APIRouter(prefix="/api/job-types", tags=["job types"])


@router.get("")
def list_job_types(user: CurrentUser, job_types: JobTypesDep) -> dict[str, Any]:
    return {
        "job_types": [{**t.schema.as_dict(), "etag": t.schema.etag} for t in job_types.all()],
        "broken": job_types.broken if user.is_admin else {},
    }


@router.get("/{name}")
def get_job_type(
    name: str, user: CurrentUser, job_types: JobTypesDep, response: Response
) -> dict[str, Any]:
    job_type = job_type_or_404(job_types, name)
    response.headers["ETag"] = f'"{job_type.schema.etag}"'
    return {**job_type.schema.as_dict(), "etag": job_type.schema.etag}
