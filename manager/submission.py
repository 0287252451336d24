"""Creating a job: check the job type, its settings and the files, compile, store.

Everything is checked before anything is written, and the job, its files and its tasks are
written in one transaction: a refused submission leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlmodel import Session, col, select

from manager.blendfile import blend_file_version
from manager.db import refresh_statistics_after
from manager.errors import Conflict, FarmError, InvalidInput, NotFound
from manager.farm_settings import get_setting
from manager.job_types import JobType, JobTypes, validate_settings
from manager.job_types.compile import author_tasks, store_tasks
from manager.models import Blob, Job, JobFile, JobPin, User
from manager.storage import Storage, safe_relative_path
from shared.frames import FrameRangeError, parse_frame_range
from shared.hashing import is_sha256

DEFAULT_JOB_TYPE = "simple-blender-render"


class StaleJobType(FarmError):
    status_code = 412
    code = "stale_job_type"


@dataclass
class Submission:
    """What a user asks for; files map relative paths to content hashes and sizes."""

    job_type: str
    settings: dict[str, Any]
    files: dict[str, tuple[str, int]]
    blend_file: str
    name: str | None = None
    priority: int = 50
    tag: str | None = None
    runners: list[str] = field(default_factory=list)
    type_etag: str | None = None


def parse_frames_or_422(frames: str) -> list[int]:
    try:
        return parse_frame_range(frames)
    except FrameRangeError as exc:
        raise InvalidInput(str(exc), code="invalid_frame_range") from exc


def job_type_or_404(job_types: JobTypes, name: str) -> JobType:
    job_type = job_types.get(name)
    if job_type is None:
        known = ", ".join(t.name for t in job_types.all())
        raise NotFound(f"there is no job type {name!r}; known: {known}", code="job_type_not_found")
    return job_type


def create_job(
    session: Session, storage: Storage, job_types: JobTypes, owner: User, submission: Submission
) -> Job:
    job_type = job_type_or_404(job_types, submission.job_type)
    if submission.type_etag is not None and submission.type_etag != job_type.schema.etag:
        raise StaleJobType(
            f"the form for job type {job_type.name} is out of date; fetch "
            f"/api/job-types/{job_type.name} again and resubmit"
        )
    settings, problems = validate_settings(job_type.schema, submission.settings)
    if problems:
        raise InvalidInput(
            f"job type {job_type.name} refused these settings: " + "; ".join(problems),
            code="invalid_settings",
        )
    if "frames" in settings:
        parse_frames_or_422(settings["frames"])
    files = _checked_files(session, storage, submission.files)
    blend_file = safe_relative_path(submission.blend_file)
    if blend_file not in files:
        raise InvalidInput(
            f"{blend_file!r} is not among the job's files", code="blend_file_missing"
        )
    if not blend_file.lower().endswith(".blend"):
        raise InvalidInput(f"{blend_file!r} is not a .blend file", code="not_a_blend")
    version = blend_file_version(storage.blob_path(files[blend_file][0]))
    name = (submission.name or PurePosixPath(blend_file).stem).strip()[:200] or "job"
    metadata: dict[str, Any] = {
        "blend_file": blend_file,
        "blender_version": version,
        "frames_per_render_task": int(get_setting(session, "frames-per-render-task")),
    }
    authored = author_tasks(job_type, name=name, settings=settings, metadata=metadata)
    frames = sorted({f for task in authored.tasks for f in task.frames})
    chunk = int(settings.get("chunk_size") or metadata["frames_per_render_task"])
    job = Job(
        name=name,
        owner_id=owner.id,
        job_type=job_type.name,
        priority=submission.priority,
        frames=str(settings.get("frames", "")),
        frame_count=len(frames),
        chunk_size=chunk,
        blend_file=blend_file,
        blender_version=version,
        settings=settings,
        tag=submission.tag or None,
        activity="queued",
    )
    session.add(job)
    session.flush()
    assert job.id is not None
    for path, (sha256, size) in files.items():
        session.add(JobFile(job_id=job.id, path=path, sha256=sha256, size=size))
    for runner_name in sorted(set(submission.runners)):
        session.add(JobPin(job_id=job.id, runner_name=runner_name))
    store_tasks(session, job, authored)
    session.commit()
    refresh_statistics_after(session, len(authored.tasks))
    return job


def _checked_files(
    session: Session, storage: Storage, files: dict[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    if not files:
        raise InvalidInput("a job needs at least its .blend file", code="no_files")
    checked: dict[str, tuple[str, int]] = {}
    for raw_path, (sha256, size) in files.items():
        path = safe_relative_path(raw_path)
        if not is_sha256(sha256):
            raise InvalidInput(f"{path}: {sha256!r} is not a SHA-256", code="invalid_hash")
        checked[path] = (sha256, size)
    hashes = sorted({sha for sha, _ in checked.values()})
    stored = {
        blob.sha256: blob.size
        for blob in session.exec(select(Blob).where(col(Blob.sha256).in_(hashes))).all()
    }
    missing = [path for path, (sha, _) in checked.items() if sha not in stored]
    if missing:
        raise Conflict(
            f"the manager does not have {len(missing)} file(s) yet: {', '.join(missing[:5])}; "
            "upload them (PUT /api/blobs/{sha256}) and submit again",
            code="files_missing",
        )
    for path, (sha, size) in checked.items():
        if stored[sha] != size:
            raise InvalidInput(
                f"{path}: size {size} does not match the stored file ({stored[sha]})",
                code="size_mismatch",
            )
    return checked


def store_upload(session: Session, storage: Storage, temp: Path, sha256: str, size: int) -> None:
    """Move a verified upload into the blob store and record it (committed by the caller)."""
    storage.commit_blob(temp, sha256)
    if session.get(Blob, sha256) is None:
        session.add(Blob(sha256=sha256, size=size))
