"""File storage: content-addressed blobs, job folders, outputs, Blender versions and temp.

Everything goes through ``Storage`` so that a shared filesystem or an S3-compatible store can
stand in later.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from manager.errors import InvalidInput, PayloadTooLarge

FOLDERS = ("blobs", "jobs", "outputs", "blender-versions", "temp")
COPY_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative_path(name: str) -> str:
    """Return ``name`` as a clean relative POSIX path, or raise InvalidInput."""
    if not name or "\x00" in name or "\\" in name or _DRIVE.match(name) or name.startswith("/"):
        raise InvalidInput(
            f"file name {name!r} is not a relative path; use forward slashes and no drive letter",
            code="invalid_path",
        )
    parts = PurePosixPath(name).parts
    if any(part in ("..", ".", "") for part in parts) or len(name) > 1024:
        raise InvalidInput(
            f"file name {name!r} may not contain '..' or '.' segments", code="invalid_path"
        )
    return "/".join(parts)


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def create_folders(self) -> None:
        for folder in FOLDERS:
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def temp_dir(self) -> Path:
        return self.root / "temp"

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def output_path(self, job_id: int, name: str) -> Path:
        return self.root / "outputs" / str(job_id) / safe_relative_path(name)

    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / str(job_id)

    def task_log_path(self, job_id: int, task_id: int) -> Path:
        return self.job_dir(job_id) / "logs" / f"task-{task_id}.log"

    def remove_job_files(self, job_id: int) -> None:
        """Delete a job's folder and outputs (blobs stay: other jobs may share them)."""
        for folder in (self.job_dir(job_id), self.root / "outputs" / str(job_id)):
            shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def temp_file(self) -> Iterator[tuple[BinaryIO, Path]]:
        """A temp file inside storage (same filesystem, so moving it is atomic)."""
        fd, name = tempfile.mkstemp(dir=self.temp_dir, prefix="upload-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f, path
        finally:
            path.unlink(missing_ok=True)

    def copy_to_temp(self, source: BinaryIO, temp: BinaryIO, *, max_bytes: int) -> tuple[str, int]:
        """Copy ``source`` into ``temp``, hashing as it goes; return (sha256, size)."""
        digest = hashlib.sha256()
        size = 0
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"upload is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            temp.write(chunk)
        temp.flush()
        return digest.hexdigest(), size

    async def stream_to_temp(
        self, chunks: AsyncIterator[bytes], temp: BinaryIO, *, max_bytes: int
    ) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"upload is larger than the limit of {max_bytes} bytes")
            digest.update(chunk)
            temp.write(chunk)
        temp.flush()
        return digest.hexdigest(), size

    def commit_blob(self, temp_path: Path, sha256: str) -> Path:
        """Move a verified temp file into the blob store (no-op if it is already there)."""
        target = self.blob_path(sha256)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)
        return target

    def commit_output(self, temp_path: Path, job_id: int, name: str) -> Path:
        target = self.output_path(job_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)
        return target
