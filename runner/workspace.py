"""The runner's workspace: blobs cached by hash, job folders built from them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from runner.client import ManagerClient
from runner.errors import WorkspaceError
from shared.hashing import is_sha256, sha256_file


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.cache = self.root / "cache"
        self.jobs = self.root / "jobs"
        for folder in (self.cache, self.jobs, self.root / "tmp", self.root / "blender-home"):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def blender_home(self) -> Path:
        return self.root / "blender-home"

    def cached_blob(self, sha256: str) -> Path:
        return self.cache / sha256[:2] / sha256

    def fetch_blob(self, client: ManagerClient, sha256: str) -> Path:
        """The blob from the cache, downloading and verifying it first if needed."""
        if not is_sha256(sha256):
            raise WorkspaceError(f"{sha256!r} is not a SHA-256")
        target = self.cached_blob(sha256)
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix="blob-")
        os.close(fd)
        temp = Path(name)
        try:
            client.download_blob(sha256, temp)
            actual = sha256_file(temp)
            if actual != sha256:
                raise WorkspaceError(f"blob {sha256} arrived damaged (got {actual}); will retry")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return target

    def prepare_job(self, client: ManagerClient, job: dict[str, Any]) -> Path:
        """Materialise the job's files under ``jobs/<id>/files`` (hard links into the cache)."""
        folder = self.jobs / str(job["id"]) / "files"
        for entry in job["files"]:
            source = self.fetch_blob(client, entry["sha256"])
            dest = folder / _safe_relative(entry["path"])
            if dest.is_file() and dest.stat().st_ino == source.stat().st_ino:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(source, dest)
            except OSError:
                shutil.copy2(source, dest)
        return folder

    def task_output_dir(self, job_id: int, task_id: int) -> Path:
        folder = self.jobs / str(job_id) / f"task-{task_id}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def remove_task_dirs(self, job_id: int, task_ids: Iterable[int]) -> None:
        for task_id in task_ids:
            shutil.rmtree(self.jobs / str(job_id) / f"task-{task_id}", ignore_errors=True)


def _safe_relative(path: str) -> Path:
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or any(p in ("..", ".") for p in parts):
        raise WorkspaceError(f"job file path {path!r} is not a safe relative path")
    return Path(*parts)
