"""Blobs: ask which files the manager lacks, then upload only those (streamed, verified)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, col, select

from manager.deps import CurrentUser, SessionDep, SettingsDep, StorageDep
from manager.errors import InvalidInput
from manager.models import Blob
from manager.schemas import BlobRef, BlobsMissing, BlobsQuery
from manager.storage import Storage
from manager.submission import store_upload
from shared.hashing import is_sha256

router = APIRouter(prefix="/api/blobs", tags=["blobs"])


@router.post("/missing", response_model=BlobsMissing)
def missing_blobs(body: BlobsQuery, user: CurrentUser, session: SessionDep) -> BlobsMissing:
    """Which of these files (by SHA-256 and size) the manager does not have yet."""
    wanted = {blob.sha256: blob.size for blob in body.blobs}
    bad = [h for h in sorted(wanted) if not is_sha256(h)]
    if bad:
        raise InvalidInput(f"not SHA-256 hashes: {bad[:5]}", code="invalid_hash")
    have: dict[str, int] = {}
    hashes = sorted(wanted)
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        found = session.exec(select(Blob).where(col(Blob.sha256).in_(chunk))).all()
        have.update((blob.sha256, blob.size) for blob in found)
    wrong = [h for h, size in have.items() if wanted[h] != size]
    if wrong:
        raise InvalidInput(
            f"{wrong[0]} is {have[wrong[0]]} bytes on the manager, not {wanted[wrong[0]]}: "
            "hash the file again and send its real size",
            code="size_mismatch",
        )
    return BlobsMissing(
        missing=[BlobRef(sha256=h, size=wanted[h]) for h in hashes if h not in have]
    )


@router.put("/{sha256}", status_code=status.HTTP_201_CREATED)
async def upload_blob(
    sha256: str,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> dict[str, str | int]:
    """Stream one file; it is stored only if its content has exactly this hash."""
    if not is_sha256(sha256):
        raise InvalidInput(f"{sha256!r} is not a lower-case hex SHA-256", code="invalid_hash")
    with storage.temp_file() as (temp, temp_path):
        actual, size = await storage.stream_to_temp(
            request.stream(), temp, max_bytes=settings.max_upload_bytes
        )
        if actual != sha256:
            raise InvalidInput(
                f"the upload's SHA-256 is {actual}, not {sha256}: it arrived damaged or "
                "belongs to another file; upload it again",
                code="checksum_mismatch",
            )
        await run_in_threadpool(_store, session, storage, temp_path, sha256, size)
    return {"sha256": sha256, "size": size}


def _store(session: Session, storage: Storage, temp, sha256: str, size: int) -> None:  # type: ignore[no-untyped-def]
    store_upload(session, storage, temp, sha256, size)
    session.commit()
